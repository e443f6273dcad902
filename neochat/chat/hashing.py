"""The bounded worker pool password hashes run in.

argon2 is slow on purpose and allocates its whole memory cost per hash.  A
few threads of their own (never the reactor's shared pool) and a bounded
queue mean a flood of logins or registrations waits its turn, or is told the
server is busy, instead of pinning every core; the other threads of the
process (the database pool, FTP) keep running.  The hashing buffers are
mapped per hash and given back to the system after it, so they do not stay
in per-thread arenas.
"""

import ctypes
import ctypes.util
import threading

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from neochat.chat import audit
from neochat.chat.errors import ChatError


class ServerBusy(ChatError):
    stat = 503

    def __init__(self):
        super().__init__("server busy, retry")


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MMAP_THRESHOLD = 1024 * 1024


def map_large_allocations():
    """Make glibc serve every allocation over 1 MiB with its own mmap, given
    back on free.  By default glibc raises that threshold after the first
    large free (up to 32 MiB), so each hashing thread would keep a 19 MiB
    argon2 buffer in its heap forever.  A no-op outside glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


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
        map_large_allocations()

    @property
    def pending(self):
        return self._pending

    def run(self, function, *args):
        if self._trigger is None:
            self._pool.start()
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        with self._lock:
            if self._pending >= self.limit:
                audit.limit_tripped("hash_queue", None)
                raise ServerBusy()
            self._pending += 1
        return threads.deferToThreadPool(self.reactor, self._pool, self._job, function, args)

    def _job(self, function, args):
        try:
            return function(*args)
        finally:
            with self._lock:
                self._pending -= 1

    def stop(self):
        if self._trigger is not None:
            self.reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
            self._pool.stop()
