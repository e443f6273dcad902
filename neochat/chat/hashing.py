"""The bounded worker pool password hashes run in.

argon2 is slow on purpose and allocates its whole memory cost per hash.  A
few threads of their own (never the reactor's shared pool) and a bounded
queue mean a flood of logins or registrations waits its turn, or is told the
server is busy, instead of pinning every core; the other threads of the
process (the database pool, FTP) keep running.  When the pool goes idle the
C library is asked to give the freed hashing buffers back to the system, so
they do not stay in per-thread arenas.
"""

import ctypes
import ctypes.util
import threading

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from neochat.chat.errors import ChatError


class ServerBusy(ChatError):
    stat = 503

    def __init__(self):
        super().__init__("server busy, retry")


def _malloc_trim():
    """glibc's malloc_trim(0), or a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()


class HashPool:
    """``run(function, *args)`` in one of ``threads`` threads, with at most
    ``queue`` more jobs waiting; past that it raises ServerBusy at once."""

    def __init__(self, reactor, threads=2, queue=64):
        self.reactor = reactor
        self.limit = threads + queue
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="neochat-hash")
        self._lock = threading.Lock()
        self._pending = 0
        self._trigger = None

    @property
    def pending(self):
        return self._pending

    def run(self, function, *args):
        if self._trigger is None:
            self._pool.start()
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        with self._lock:
            if self._pending >= self.limit:
                raise ServerBusy()
            self._pending += 1
        return threads.deferToThreadPool(self.reactor, self._pool, self._job, function, args)

    def _job(self, function, args):
        try:
            return function(*args)
        finally:
            with self._lock:
                self._pending -= 1
                idle = self._pending == 0
            if idle and MALLOC_TRIM is not None:
                MALLOC_TRIM(0)

    def stop(self):
        if self._trigger is not None:
            self.reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
            self._pool.stop()
