"""The adbapi connection pools, and transactions that speak ``?`` SQL.

Writes go through one pool.  Reads that may run beside the writer (the
pending-queue replay, history pages) use ``read``: on SQLite a second pool of
read-only connections (WAL lets them read while the writer commits); on
MySQL the same pool, which has connections for both.
"""

import time
from collections import Counter

from twisted.enterprise import adbapi
from twisted.internet import defer, task
from twisted.logger import Logger

from neochat.latency import Histogram
from neochat.store.checkpoint import Checkpointer

log = Logger()

RETRIES = 3  # for deadlocks and lock waits
RETRY_WINDOW = 10.0  # seconds a lost database is waited for before requests fail
FIRST_DELAY, MAX_DELAY = 0.1, 2.0  # backoff between reconnection attempts


class DatabaseUnavailable(Exception):
    """The database could not be reached within the retry window: a
    temporary failure the client may retry."""


class MissingReference(Exception):
    """A row named an account, group or message that does not exist."""


class NotAMember(Exception):
    """A group message from someone outside the group."""


class ClientIdReused(Exception):
    """A client_id its author already used for a different message."""


def marks(values):
    """``?, ?, ?``: one placeholder per value, for ``IN (...)`` and ``VALUES (...)``."""
    return ", ".join("?" * len(values))


class Txn:
    """A cursor that takes ``?`` placeholders whatever the driver."""

    def __init__(self, cursor, dialect):
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, sql, args=()):
        self._cursor.execute(self._dialect.translate(sql), tuple(args))
        return self

    def executemany(self, sql, rows):
        self._cursor.executemany(self._dialect.translate(sql), [tuple(r) for r in rows])
        return self

    @property
    def rowcount(self):
        return self._cursor.rowcount

    @property
    def lastrowid(self):
        return self._cursor.lastrowid

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    def dicts(self):
        names = [column[0] for column in self._cursor.description]
        return [dict(zip(names, row)) for row in self._cursor.fetchall()]

    def dict(self):
        rows = self.dicts()
        return rows[0] if rows else None

    def scalar(self):
        row = self._cursor.fetchone()
        return row[0] if row else None


class Database:
    """Owns the pools.  ``run`` executes a function in one transaction on the
    writer; ``read`` runs a read-only one beside it."""

    def __init__(self, dialect, reactor=None, retry_window=RETRY_WINDOW):
        if reactor is None:
            from twisted.internet import reactor
        self.dialect = dialect
        self.reactor = reactor
        self.retry_window = retry_window
        self.pool = self._pool(dialect.pool_args())
        read_args = dialect.read_pool_args()
        self.read_pool = self._pool(read_args) if read_args else self.pool
        checkpoint_args = dialect.checkpoint_pool_args()
        self.checkpointer = Checkpointer(self._pool(checkpoint_args), self.pool) if checkpoint_args else None
        self._outage = False  # logged once per outage, not per request
        self.retries = Counter()  # "deadlock" or "connection" -> interactions run again
        # interactions as callers wait for them, pool queueing and retries included
        self.latency = {"read": Histogram(), "write": Histogram()}

    def _pool(self, pool_args):
        args, kwargs = pool_args
        return adbapi.ConnectionPool(self.dialect.module, *args, cp_reactor=self.reactor, cp_noisy=False, **kwargs)

    def run(self, interaction, *args, **kwargs):
        """Run ``interaction(txn, *args)`` in a transaction, retrying it whole
        when MySQL picked it as a deadlock victim (a few times) or the
        connection failed (with backoff, for ``retry_window`` seconds; then
        DatabaseUnavailable).

        Interactions must therefore be idempotent: writes are keyed so that
        running one twice stores its rows once.
        """
        return self._timed("write", self.pool, interaction, args, kwargs)

    def read(self, interaction, *args, **kwargs):
        """Run a read-only ``interaction`` beside the writer."""
        return self._timed("read", self.read_pool, interaction, args, kwargs)

    def _timed(self, kind, pool, interaction, args, kwargs):
        histogram, started = self.latency[kind], time.monotonic()

        def observe(result):
            histogram.observe(time.monotonic() - started)
            if kind == "write" and self.checkpointer is not None:
                self.checkpointer.wrote()
            return result

        return self._run(pool, interaction, args, kwargs).addBoth(observe)

    @defer.inlineCallbacks
    def _run(self, pool, interaction, args, kwargs):
        attempt, waited, delay = 0, 0.0, FIRST_DELAY
        while True:
            attempt += 1
            try:
                result = yield pool.runInteraction(self._wrap, interaction, args, kwargs)
            except Exception as error:
                if self.dialect.is_connection_error(error):
                    if waited >= self.retry_window:
                        raise DatabaseUnavailable(str(error)) from error
                    self._lost(error)
                    self.retries["connection"] += 1
                    yield task.deferLater(self.reactor, delay, lambda: None)
                    waited += delay
                    delay = min(MAX_DELAY, delay * 2)
                    continue
                if attempt >= RETRIES or not self.dialect.is_retryable(error):
                    raise
                log.warn("retrying {name} after {error!r}", name=interaction.__name__, error=error)
                self.retries["deadlock"] += 1
                continue
            if self._outage:
                self._outage = False
                log.info("database {db} reachable again", db=self.dialect.describe())
            return result

    def _lost(self, error):
        if not self._outage:
            self._outage = True
            log.warn("database {db} unreachable ({error!r}): retrying for up to {window} s per request",
                     db=self.dialect.describe(), error=error, window=self.retry_window)

    def _wrap(self, cursor, interaction, args, kwargs):
        return interaction(Txn(cursor, self.dialect), *args, **kwargs)

    def close(self):
        self.pool.close()
        if self.read_pool is not self.pool:
            self.read_pool.close()
        if self.checkpointer is not None:
            self.checkpointer.pool.close()
