"""SQLite checkpoints off the writer's path.

In WAL mode a commit appends pages to the write-ahead log; a checkpoint
copies them back into the database file and fsyncs it.  Left to SQLite, the
connection that commits runs one every 1,000 pages (a fraction of a second
at 2,000 msgs/s: a transaction writes 7 or 8 pages), and the messages
waiting for the next commit wait for it, 5-10 ms each time: that was most
of the p99 of a steady 2,000 msgs/s.

Here, at most every INTERVAL seconds while writes go on, a connection of
its own, on a thread of its own, copies the log (PASSIVE: it never blocks
the writer or the readers).  A checkpoint beside a busy writer never catches
up with it, and the log only starts over once all of it has been copied
before the next write; so the writer's own connection then runs a second,
short pass (the pages appended meanwhile), and SQLite starts the log over at
the next write.  The writer keeps an automatic checkpoint only as a bound
(dialect.WRITER_CHECKPOINT_PAGES), for when this one falls behind.
"""

import time

from twisted.logger import Logger

log = Logger()

# Seconds between checkpoints while writes go on.  Steady 2,000 msgs/s on
# SQLite, p99: 3.7-3.8 ms at 0.2 s, 5.0-5.2 at 0.5 s, 8.6-8.8 at 1 s; and
# 8-11 ms when the writer only finishes once the log holds 8,000 pages.
INTERVAL = 0.2


class Checkpointer:
    def __init__(self, pool, writer_pool, interval=INTERVAL):
        self.pool = pool
        self.writer_pool = writer_pool
        self.interval = interval
        self._last = time.monotonic()
        self._running = False

    def wrote(self):
        """A write committed: checkpoint if the last one is old enough."""
        if self._running or time.monotonic() - self._last < self.interval:
            return
        self._running = True
        checkpoint = self.pool.runWithConnection(_checkpoint)
        checkpoint.addCallback(lambda _: self.writer_pool.runWithConnection(_checkpoint))
        checkpoint.addErrback(lambda failure: log.failure("checkpoint failed", failure))
        checkpoint.addBoth(self._done)

    def _done(self, _):
        self._running = False
        self._last = time.monotonic()


def _checkpoint(conn):
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
