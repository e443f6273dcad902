"""The adbapi connection pools, and transactions that speak ``?`` SQL.

Writes go through one pool.  Reads that may run beside the writer (the
pending-queue replay, history pages) use ``read``: on SQLite a second pool of
read-only connections (WAL lets them read while the writer commits); on
MySQL the same pool, which has connections for both.
"""

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

RETRIES = 3


class MissingReference(Exception):
    """A row named an account, group or message that does not exist."""


class NotAMember(Exception):
    """A group message from someone outside the group."""


class ClientIdReused(Exception):
    """A client_id its author already used for a different message."""


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
    """Owns the pool.  ``run`` executes a function in one transaction."""

    def __init__(self, dialect, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.dialect = dialect
        self.reactor = reactor
        self.pool = self._pool(dialect.pool_args())
        read_args = dialect.read_pool_args()
        self.read_pool = self._pool(read_args) if read_args else self.pool

    def _pool(self, pool_args):
        args, kwargs = pool_args
        return adbapi.ConnectionPool(self.dialect.module, *args, cp_reactor=self.reactor, cp_noisy=False, **kwargs)

    def run(self, interaction, *args, **kwargs):
        """Run ``interaction(txn, *args)`` in a transaction, retrying it whole
        when MySQL dropped the connection or picked it as a deadlock victim.

        Interactions must therefore be idempotent: writes are keyed so that
        running one twice stores its rows once.
        """
        return self._run(self.pool, interaction, args, kwargs)

    def read(self, interaction, *args, **kwargs):
        """Run a read-only ``interaction`` beside the writer."""
        return self._run(self.read_pool, interaction, args, kwargs)

    @defer.inlineCallbacks
    def _run(self, pool, interaction, args, kwargs):
        for attempt in range(1, RETRIES + 1):
            try:
                result = yield pool.runInteraction(self._wrap, interaction, args, kwargs)
                return result
            except Exception as error:
                if attempt == RETRIES or not self.dialect.is_retryable(error):
                    raise
                log.warn("retrying {name} after {error!r}", name=interaction.__name__, error=error)

    def _wrap(self, cursor, interaction, args, kwargs):
        return interaction(Txn(cursor, self.dialect), *args, **kwargs)

    def close(self):
        self.pool.close()
        if self.read_pool is not self.pool:
            self.read_pool.close()
