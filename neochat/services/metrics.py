"""The Prometheus endpoint (``--metrics tcp:9100:interface=127.0.0.1``, off
by default): a twisted.web page rendered on the reactor thread from what
the server holds in memory, so a scrape never races the reactor and never
waits on the database (the pending-queue depth is refreshed by a timer).

Counts and latency histograms (neochat/latency.py) are read at each scrape
from where the server keeps them: audit.py, the chat domain, the database,
the relay."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web import resource, server

from neochat.chat import audit

log = Logger()

PENDING_REFRESH_SECONDS = 10
DIALECTS = {"JsonDialect": "json", "HeaderDialect": "header"}
COUNTERS = (  # audit event -> (metric, help, label name)
    ("login", "neochat_logins", "Logins by result", "result"),
    ("message", "neochat_messages", "Messages accepted by kind", "kind"),
    ("registration", "neochat_registrations", "Accounts registered", None),
    ("kick", "neochat_kicks", "Sessions kicked by an administrator", None),
    ("ban", "neochat_bans", "Bans by kind", "kind"),
    ("calls", "neochat_calls_accepted", "Calls accepted by kind", "kind"),
    ("file_transfers", "neochat_file_transfers", "Files stored (upload) and sent (download), over FTP, HTTP"
     " and in-band", "direction"),
    ("file_bytes", "neochat_file_transfer_bytes", "Bytes of those files", "direction"),
    ("limit", "neochat_limits_tripped", "Requests and connections refused or held back, by limit", "limit"),
)


class NeoChatCollector:
    """Reads the root service's parts at each scrape."""

    def __init__(self, root):
        self.root = root
        self.pending = 0

    def collect(self):
        root = self.root
        connections = GaugeMetricFamily("neochat_connections", "Open message-server connections by dialect",
                                        labels=["dialect"])
        by_dialect = {"json": 0, "header": 0, "undecided": 0}
        for connection in root.chat_service.factory.connections:
            by_dialect[DIALECTS.get(type(connection.dialect).__name__, "undecided")] += 1
        for dialect, number in sorted(by_dialect.items()):
            connections.add_metric([dialect], number)
        yield connections
        yield GaugeMetricFamily("neochat_online_accounts", "Accounts logged in",
                                value=len(root.router.online_accounts()))
        yield GaugeMetricFamily("neochat_pending_messages", "Messages waiting in pending queues"
                                f" (refreshed every {PENDING_REFRESH_SECONDS} s)", value=self.pending)
        yield from self._audit_counters()
        retries = CounterMetricFamily("neochat_database_retries", "Database interactions run again, by reason"
                                      " (deadlock victim, or connection lost: --db-retry)", labels=["reason"])
        for reason in ("connection", "deadlock"):
            retries.add_metric([reason], root.db.retries[reason])
        yield retries
        yield from self._latencies(root)
        yield from self._relay(root.cell.counters())

    @staticmethod
    def _audit_counters():
        snapshot = dict(audit.counts)
        for event, name, text, label in COUNTERS:
            family = CounterMetricFamily(name, text, labels=[label] if label else [])
            for (seen, value), number in sorted(snapshot.items()):
                if seen == event:
                    family.add_metric([value] if label else [], number)
            yield family

    @staticmethod
    def _latencies(root):
        for name, text, histogram in (
            ("neochat_message_delivery_seconds", "From a message's arrival to its write to a live recipient's"
             " connection", root.chat.delivery_latency),
            ("neochat_message_commit_seconds", "From a message's arrival to its commit (then the sender's receipt)",
             root.chat.commit_latency),
        ):
            family = HistogramMetricFamily(name, text)
            family.add_metric([], histogram.cumulative(), histogram.sum)
            yield family
        database = HistogramMetricFamily("neochat_database_seconds", "Database interactions as the server waits"
                                         " for them (pool queueing and retries included), by kind", labels=["kind"])
        for kind, histogram in sorted(root.db.latency.items()):
            database.add_metric([kind], histogram.cumulative(), histogram.sum)
        yield database

    @staticmethod
    def _relay(counters):
        yield GaugeMetricFamily("neochat_calls", "Calls in progress", value=counters["calls"])
        yield CounterMetricFamily("neochat_relay_packets", "Datagrams relayed", value=counters["relayed_packets"])
        yield CounterMetricFamily("neochat_relay_bytes", "Bytes relayed", value=counters["relayed_bytes"])
        dropped = CounterMetricFamily("neochat_relay_dropped", "Datagrams dropped by reason", labels=["reason"])
        for name, number in sorted(counters.items()):
            if name.startswith("dropped_"):
                dropped.add_metric([name[len("dropped_"):]], number)
        yield dropped


class MetricsPage(resource.Resource):
    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class MetricsService(service.Service):
    """Serves the metrics page (at any path) on ``endpoint``."""

    def __init__(self, root, endpoint, reactor):
        self.collector = NeoChatCollector(root)
        registry = CollectorRegistry()
        registry.register(self.collector)
        self.site = server.Site(MetricsPage(registry))
        self.site.noisy = False
        self.endpoint = serverFromString(reactor, endpoint)
        self.port = None
        self._admin_store = root.admin_store
        self._refresh = task.LoopingCall(self._refresh_pending)
        self._refresh.clock = reactor

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        self.port = yield self.endpoint.listen(self.site)
        self._refresh.start(PENDING_REFRESH_SECONDS)
        log.info("metrics on {address}", address=self.port.getHost())

    def stopService(self):
        super().stopService()
        if self._refresh.running:
            self._refresh.stop()
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port else defer.succeed(None)

    def _refresh_pending(self):
        def store(number):
            self.collector.pending = number

        return self._admin_store.pending_count().addCallbacks(
            store, lambda failure: log.failure("counting pending messages failed", failure))
