"""The service tree of one NeoChat process, built from Settings alone."""

import dataclasses
import gc

from argon2 import PasswordHasher
from twisted.application import internet, service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from neochat.admin.operations import Administration, Live
from neochat.chat.accounts import Accounts
from neochat.chat.calling import Calls
from neochat.chat.calls import RELAY
from neochat.chat.clips import VoiceSpool
from neochat.chat.domain import Chat
from neochat.chat.files import FileLibrary
from neochat.chat.hashing import HashPool
from neochat.chat.model import Notice
from neochat.chat.routing import LocalRouter
from neochat.chat.throttle import Throttle
from neochat.chat.tokens import ResumeTokens, load_secret
from neochat.chat.transfers import Transfers
from neochat.services.cell import ANY_INTERFACE, CellService
from neochat.services.chat import ChatService
from neochat.services import lifecycle
from neochat.services.admin import AdminService, socket_path
from neochat.services.ftp import FTPService
from neochat.services.tls import ssl_files
from neochat.services.metrics import MetricsService
from neochat.store import Database, Store, dialect_from_url
from neochat.store.admin import AdminStore
from neochat.store.schema import upgrade
from neochat.web.service import WebService

log = Logger()

LOOPBACK = "127.0.0.1"
RETENTION_CHECK_SECONDS = 3600
TOKEN_KEY_FILE = "token.key"

# Messages in flight are many young objects (requests, messages, their sends):
# collect the young generation less often than Python's default (700, 10, 10),
# so that collections do not rescan thousands of messages in flight every few
# hundred allocations (100 senders with 100 in flight: 55 µs of CPU per
# message with these thresholds, 81-94 µs with the default ones).
GC_THRESHOLDS = (50_000, 20, 20)


class NeoChatService(service.MultiService):
    """Upgrades the schema before any child listens, and on stop closes the
    pool only after every child has stopped.

    ``owns_process``: this service is the process's application (twistd, a
    .tac): a failed start stops the reactor and makes the process exit
    non-zero, and a stop that takes too long or is asked for twice is forced.
    """

    def __init__(self, settings, reactor, owns_process=False):
        super().__init__()
        self.reactor = reactor
        self.owns_process = owns_process
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(
            dialect_from_url(settings.database_url(), settings.data_dir), reactor, settings.db_retry_seconds
        )
        self.store = Store(self.db)
        self.admin_store = AdminStore(self.db)
        self.router = cluster_router(settings, reactor) if settings.cluster else LocalRouter()
        self.accounts = Accounts(
            self.store.users,
            PasswordHasher(time_cost=settings.hash_time_cost, memory_cost=settings.hash_memory_kib, parallelism=1),
            reactor,
            pool=HashPool(reactor, settings.hash_threads, settings.hash_queue),
            throttle=throttle(settings, reactor, self.router),
            tokens=ResumeTokens(load_secret(settings.data_dir / TOKEN_KEY_FILE), reactor, settings.token_lifetime),
        )
        self.cell = CellService(
            settings.call_limits, interface=settings.cell_interface, port=settings.cell_port, relay_ports=settings.relay_ports,
            client_ports=settings.client_ports, advertised_ip=advertised_ip(settings),
            mode=settings.voice_mode, reactor=reactor, udp_buffer=settings.udp_buffer,
        )
        self.files = FileLibrary(
            self.store.files, settings.data_dir / "files", settings.ftp.file_limits(), reactor
        )
        self.chat = Chat(
            self.store, self.router, self.accounts, reactor, settings.friends_only,
            calls=cluster_calls(self.cell, self.router) if settings.cluster else Calls(self.cell, self.router),
            files=self.files,
            transfers=Transfers(self.store, self.router, self.files),
            # one spool per node: each empties its own at start
            clips=VoiceSpool(settings.node_file("voice-spool"), settings.limits.voice_spool_per_sender,
                             settings.limits.voice_spool_total),
            presence_interval=settings.presence_interval, behind_deadline=settings.behind_deadline,
        )
        self.chat.groups.max_members = settings.limits.max_group_size
        if settings.cluster:
            self.router.bind(self.chat)
        try:
            self.chat_service = ChatService(self.chat, settings.listen, reactor, settings.limits)
        except Exception as error:
            raise lifecycle.StartFailed(
                f"cannot use --listen {' '.join(settings.listen)}: {error}",
                "fix the endpoint; the files named by privateKey= and certKey= must be readable PEM",
            ) from error
        self.ftp_service = FTPService(self.files, self.accounts, ftp_settings(settings), reactor)
        try:
            self.web_service = WebService(self.chat, self.files, settings.http, reactor, settings.http_origins,
                                          counter=self.chat_service.factory.counter, limits=settings.limits)
        except Exception as error:
            raise lifecycle.StartFailed(
                f"cannot use --http {' '.join(settings.http)}: {error}",
                "fix the endpoint; the files named by privateKey= and certKey= must be readable PEM",
            ) from error
        retention = internet.TimerService(RETENTION_CHECK_SECONDS, self._purge_expired_files)
        self.administration = Administration(
            self.store, self.admin_store, self.accounts, self.files,
            Live(self.chat, (self.chat_service.factory.connections, self.web_service.site.gateway.connections),
                 self.cell.counters, self.router if settings.cluster else None),
        )
        admin = AdminService(self.administration, socket_path(settings), reactor)
        # Children stop in this order: the admin socket (and metrics), the
        # web client's WebSockets, chat (their logouts end the calls; chat
        # drains the writes), cell, FTP (whose thread needs the reactor), the timer.
        children = [("admin", admin), ("http", self.web_service), ("chat", self.chat_service), ("cell", self.cell),
                    ("ftp", self.ftp_service), ("file-retention", retention)]
        if settings.metrics:
            children.insert(1, ("metrics", MetricsService(self, settings.metrics, reactor)))
        if settings.cluster:  # last: the logouts are announced
            children.append(("cluster", self.router))
        for name, child in children:
            child.setName(name)
            child.setServiceParent(self)
        self.ready = None
        self.started = False  # every child started

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
        yield self.administration.reload_admission()
        started = [defer.maybeDeferred(child.startService) for child in self]
        yield defer.gatherResults(started, consumeErrors=True)
        self.started = True
        log.info("NeoChat ready on {db}", db=self.db.dialect.describe())
        gc.freeze()  # what startup built is never garbage: no collection scans it again
        gc.set_threshold(*GC_THRESHOLDS)
        if self.owns_process:
            lifecycle.notify_systemd("READY=1")

    def _failed_to_start(self, failure):
        service = list(self)[failure.value.index].name if failure.check(defer.FirstError) else None
        reason = lifecycle.describe(failure, self.db.dialect.describe(), service)
        if reason is None:
            log.failure("NeoChat could not start", lifecycle.unwrap(failure))
        else:
            log.critical("NeoChat could not start: {reason}", reason=reason)
        if self.owns_process:
            lifecycle.exit_at_the_end(lifecycle.START_FAILED)
            if self.reactor.running:
                self.reactor.stop()
            return None
        return failure

    @defer.inlineCallbacks
    def stopService(self):
        """Tell the clients, stop chat (its logouts end the calls and it
        finishes every accepted write), cell and FTP, checkpoint SQLite so
        that its file alone is complete, close the pool."""
        service.Service.stopService(self)
        forcing = None
        if self.owns_process:
            lifecycle.notify_systemd("STOPPING=1")
            lifecycle.force_on_second_signal(lifecycle.force_exit)
            forcing = self.reactor.callLater(lifecycle.STOP_TIMEOUT, lifecycle.force_exit,
                                             f"still stopping after {lifecycle.STOP_TIMEOUT:g} s")
        self.router.broadcast(Notice("shutdown", {"reason": "server shutting down"}))
        for child in self:
            if child.running:
                yield defer.maybeDeferred(child.stopService)
        self.accounts.pool.stop()
        if self.started:
            try:
                yield self.admin_store.checkpoint()
            except Exception:
                log.failure("checkpointing the database failed", Failure())
        self.db.close()
        if forcing is not None and forcing.active():
            forcing.cancel()
        log.info("NeoChat stopped")


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

    return ClusterRouter(settings.cluster, settings.node_name(), reactor, settings.cluster_prefix,
                         settings.cluster_heartbeat, settings.cluster_ask_timeout, settings.cluster_max_clip)


def cluster_calls(cell, router):
    from neochat.cluster.calls import ClusterCalls

    return ClusterCalls(cell, router)


def throttle(settings, reactor, router):
    """Failed logins and registrations: counted in this process, and in Redis for a cluster."""
    local = Throttle(reactor, settings.throttle)
    if not settings.cluster:
        return local
    from neochat.cluster.throttle import ClusterThrottle

    return ClusterThrottle(local, router, reactor)


def ftp_settings(settings):
    """FTP's settings; without a certificate of its own, FTP offers AUTH TLS
    with the first ssl: listen endpoint's."""
    if settings.ftp.certfile is not None:
        return settings.ftp
    for description in settings.listen:
        files = ssl_files(description)
        if files is not None:
            return dataclasses.replace(settings.ftp, certfile=files[0], keyfile=files[1])
    return settings.ftp


def build_service(settings, reactor=None, owns_process=False):
    """The root service.  With ``owns_process`` (twistd, .tac files) an
    error while building it ends the process with one line instead of a
    traceback."""
    if reactor is None:
        from twisted.internet import reactor
    try:
        return NeoChatService(settings, reactor, owns_process)
    except Exception:
        if not owns_process:
            raise
        reason = lifecycle.describe(Failure(), settings.database_url() or "sqlite")
        if reason is None:
            raise
        raise SystemExit(f"NeoChat could not start: {reason}") from None
