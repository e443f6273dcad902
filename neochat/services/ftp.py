"""The FTP file server: pyftpdlib on a thread of its own, inside the reactor.

Accounts are NeoChat's.  Each user sees one flat directory holding the files
they may read; STOR and STOU store under the naming rule and the final reply
names the stored file.  docs/files.md describes the behaviour in full.
"""

import logging
import queue
import socket
import threading
from dataclasses import dataclass

from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger, LogLevel

from neochat.chat.files import FileLimits
from neochat.services.ftp_handler import handler_class

log = Logger()

POLL_SECONDS = 0.1  # how long stopService may wait for the loop to notice


@dataclass
class FtpSettings:
    interface: str = "0.0.0.0"
    port: int = 2121  # 0: any free port (read it back from FTPService.address)
    passive_ports: tuple = None  # (first, last); None: any free port
    masquerade_address: str = None  # the address PASV announces, behind NAT
    max_file_size: int = FileLimits.max_file_size  # bytes; 0: no limit
    user_quota: int = FileLimits.user_quota  # bytes an account may own; 0: no quota
    retention_days: float = FileLimits.retention_days  # 0: keep files forever
    certfile: str = None  # PEM certificate: enables AUTH TLS (FTPS)
    keyfile: str = None  # PEM private key; None: it is in certfile
    tls_required: bool = False  # refuse login and data without TLS
    auth_failed_delay: float = 3.0  # seconds before a failed login is answered

    def file_limits(self):
        return FileLimits(self.max_file_size, self.user_quota, self.retention_days)


LOG_LEVELS = {
    logging.DEBUG: LogLevel.debug,
    logging.INFO: LogLevel.info,
    logging.WARNING: LogLevel.warn,
    logging.ERROR: LogLevel.error,
    logging.CRITICAL: LogLevel.critical,
}


class TwistedLogHandler(logging.Handler):
    """Sends pyftpdlib's records to the Twisted log, on the reactor thread."""

    _log = Logger(namespace="pyftpdlib")

    def __init__(self, reactor):
        super().__init__()
        self.reactor = reactor

    def emit(self, record):
        level = LOG_LEVELS.get(record.levelno, LogLevel.error)
        self.reactor.callFromThread(self._log.emit, level, "{message}", message=self.format(record))


def route_pyftpdlib_logging(reactor):
    """pyftpdlib configures root logging itself unless its logger has a
    handler, so give it one, once."""
    pyftpdlib_logger = logging.getLogger("pyftpdlib")
    if not any(isinstance(h, TwistedLogHandler) for h in pyftpdlib_logger.handlers):
        pyftpdlib_logger.addHandler(TwistedLogHandler(reactor))
        pyftpdlib_logger.setLevel(logging.INFO)
        pyftpdlib_logger.propagate = False


class Mailbox:
    """Callables the reactor hands to the FTP thread.  ``put`` (any thread)
    queues one and wakes the FTP loop through a socket pair, so an answer is
    run at once, not at the loop's next timeout.  The loop sees this object
    as one more channel (pyftpdlib's IOLoop only needs these methods).
    Once the loop has closed it, answers are dropped: their sessions are gone
    (and ``.partial/`` is emptied at the next start)."""

    def __init__(self, ioloop):
        self._queue = queue.SimpleQueue()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._fileno = self._wake_in.fileno()
        ioloop.register(self._fileno, self, ioloop.READ)

    def put(self, answer):
        self._queue.put(answer)
        try:
            self._wake_out.send(b"!")
        except BlockingIOError:  # the pair is full of wake-ups already
            pass
        except OSError:  # closed: the FTP thread is gone
            pass

    def readable(self):
        return True

    def writable(self):
        return False

    def handle_read_event(self):
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                answer = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                answer()
            except Exception:  # one session's failure; the next answers still run
                logging.getLogger("pyftpdlib").exception("FTP answer failed")

    def handle_error(self):
        logging.getLogger("pyftpdlib").exception("FTP mailbox failed")

    def handle_close(self):
        pass

    def close(self):
        self._wake_in.close()
        self._wake_out.close()


class FTPService(service.Service):
    """Serves ``library`` to ``accounts`` over FTP (FTPS with a certificate).

    Stop it before the reactor and the database pool go away: the FTP
    thread waits on the reactor for every database answer.
    """

    def __init__(self, library, accounts, settings, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.library = library
        self.accounts = accounts
        self.settings = settings
        self.reactor = reactor
        self.server = None
        self._stopping = None
        self._stopped = None

    @property
    def address(self):
        """(host, port) the control connection listens on."""
        return self.server.address

    def startService(self):
        route_pyftpdlib_logging(self.reactor)
        ioloop = IOLoop()
        handler = handler_class(self.library, self.accounts, self.settings, self.reactor, Mailbox(ioloop))
        self.server = FTPServer((self.settings.interface, self.settings.port), handler, ioloop=ioloop)
        self._stopping = threading.Event()
        self._stopped = defer.Deferred()
        threading.Thread(target=self._serve, name="neochat-ftp", daemon=True).start()
        super().startService()
        log.info("FTP file server on {host}:{port}", host=self.address[0], port=self.address[1])

    def _serve(self):
        try:
            while not self._stopping.is_set():
                # What serve_forever(timeout, blocking=False, handle_exit=False)
                # does, without its "starting" log line on every pass.
                self.server.ioloop.loop(POLL_SECONDS, blocking=False)
        except Exception:
            logging.getLogger("pyftpdlib").exception("FTP server loop failed")
        finally:
            self.server.close_all()
            self.reactor.callFromThread(self._stopped.callback, None)

    def stopService(self):
        """Close every FTP connection (uploads in progress are dropped).
        The Deferred fires once the FTP thread is done; never join() it here."""
        super().stopService()
        if self._stopping is None:
            return defer.succeed(None)
        self._stopping.set()
        return self._stopped
