"""The service tree of one NeoChat process, built from Settings alone."""

import gc
import socket

from argon2 import PasswordHasher
from twisted.application import internet, service
from twisted.internet import defer
from twisted.logger import Logger

from neochat.chat.accounts import Accounts
from neochat.chat.calling import Calls
from neochat.chat.calls import RELAY
from neochat.chat.domain import Chat
from neochat.chat.files import FileLibrary
from neochat.chat.routing import LocalRouter
from neochat.chat.transfers import Transfers
from neochat.services.cell import ANY_INTERFACE, CellService
from neochat.services.chat import ChatService
from neochat.services.ftp import FTPService
from neochat.store import Database, Store, dialect_from_url
from neochat.store.schema import upgrade

log = Logger()

LOOPBACK = "127.0.0.1"
RETENTION_CHECK_SECONDS = 3600
# Messages in flight are many young objects (Deferreds, generators): collect
# the young generation less often than Python's default (700, 10, 10), so
# that collections do not rescan thousands of messages in flight every few
# hundred allocations (3x the throughput at 100 senders with 100 in flight).
GC_THRESHOLDS = (50_000, 20, 20)


class NeoChatService(service.MultiService):
    """Upgrades the schema before any child listens, and on stop closes the
    pool only after every child has stopped."""

    def __init__(self, settings, reactor):
        super().__init__()
        self.reactor = reactor
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(dialect_from_url(settings.database_url(), settings.data_dir), reactor)
        self.store = Store(self.db)
        hasher = PasswordHasher(
            time_cost=settings.hash_time_cost, memory_cost=settings.hash_memory_kib
        )
        self.accounts = Accounts(self.store.users, hasher, reactor)
        self.router = cluster_router(settings, reactor) if settings.cluster else LocalRouter()
        self.cell = CellService(
            settings.call_limits, interface=settings.cell_interface, port=settings.cell_port, relay_ports=settings.relay_ports,
            client_ports=settings.client_ports, advertised_ip=advertised_ip(settings),
            mode=settings.voice_mode, reactor=reactor,
        )
        self.files = FileLibrary(
            self.store.files, settings.data_dir / "files", settings.ftp.file_limits(), reactor
        )
        self.chat = Chat(
            self.store, self.router, self.accounts, reactor, settings.friends_only,
            calls=Calls(self.cell, self.router),
            files=self.files,
            transfers=Transfers(self.store, self.router, self.files),
            presence_interval=settings.presence_interval, behind_deadline=settings.behind_deadline,
        )
        if settings.cluster:
            self.router.bind(self.chat)
        self.chat_service = ChatService(self.chat, settings.listen, reactor)
        self.ftp_service = FTPService(self.files, self.accounts, settings.ftp, reactor)
        retention = internet.TimerService(RETENTION_CHECK_SECONDS, self._purge_expired_files)
        # Children stop in this order: chat first (its logouts end the calls),
        # then cell, then FTP (whose thread needs the reactor), then the timer,
        # then the cluster router (the logouts are announced).
        children = [("chat", self.chat_service), ("cell", self.cell),
                    ("ftp", self.ftp_service), ("file-retention", retention)]
        if settings.cluster:
            children.append(("cluster", self.router))
        for name, child in children:
            child.setName(name)
            child.setServiceParent(self)
        self.ready = None

    def _purge_expired_files(self):
        return self.files.purge_expired().addErrback(
            lambda failure: log.failure("purging expired files failed", failure)
        )

    def startService(self):
        service.Service.startService(self)
        self.ready = self._start()
        self.ready.addErrback(self._failed_to_start)

    @defer.inlineCallbacks
    def _start(self):
        before, after = yield upgrade(self.db)
        if before != after:
            log.info("schema upgraded from version {before} to {after}", before=before, after=after)
        started = [defer.maybeDeferred(child.startService) for child in self]
        yield defer.gatherResults(started, consumeErrors=True)
        log.info("NeoChat ready on {db}", db=self.db.dialect.describe())
        gc.freeze()  # what startup built is never garbage: no collection scans it again
        gc.set_threshold(*GC_THRESHOLDS)

    def _failed_to_start(self, failure):
        log.failure("NeoChat could not start", failure)
        if self.reactor.running:
            self.reactor.stop()
        return failure

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in self:
            if child.running:
                yield defer.maybeDeferred(child.stopService)
        self.db.close()


def advertised_ip(settings):
    """Where clients send relayed media: the setting, else (None) the cell interface,
    else, on all interfaces in relay mode, loopback with a warning."""
    if settings.advertise_ip or settings.voice_mode != RELAY or settings.cell_interface not in ANY_INTERFACE:
        return settings.advertise_ip
    log.warn("cell server on all interfaces without --advertise-ip: relayed voice calls"
             " are advertised at {ip}, reachable from this host only", ip=LOOPBACK)
    return LOOPBACK


def cluster_router(settings, reactor):
    """Redis is imported only for a cluster."""
    from neochat.cluster.router import ClusterRouter

    node_id = settings.node_id or f"{socket.gethostname()}-{settings.listen[0].split(':')[1]}"
    return ClusterRouter(settings.cluster, node_id, reactor, settings.cluster_prefix, settings.cluster_heartbeat)


def build_service(settings, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    return NeoChatService(settings, reactor)
