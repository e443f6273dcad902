"""Batched reads: lookups by key that arrive together share one query.

A reconnect storm brings thousands of logins a second, each reading the
account's password hash, its pending messages and its friends.  Lookups made
within one reactor turn, or while the previous query of the same kind runs,
go to the read pool as ONE query (``WHERE ... IN (...)``), at most
``max_keys`` keys a query, and the results are split per key: one thread
hand-off and one statement per batch instead of per login.

Reads only, so durability is untouched; a batch starts after every lookup
in it was asked for, so each sees every commit made before it asked.
"""

from twisted.internet import defer
from twisted.python.failure import Failure

from neochat.store.drain import Drain

MAX_KEYS = 200  # per query; SQLite allows 500 arms in a UNION ALL


class BatchedRead:
    """``lookup(keys)`` returns Deferred[dict key -> result] for a list of
    distinct keys; a key it leaves out gets ``missing``.  Waiters of the same
    key get the same result object: they must not change it."""

    def __init__(self, reactor, lookup, missing=None, max_keys=MAX_KEYS):
        self.lookup = lookup
        self.missing = missing
        self.max_keys = max_keys
        self._waiting = {}  # key -> [Deferred], in the order first asked
        self._drain = Drain(reactor, lambda: bool(self._waiting), self._look_up_next)

    def get(self, key):
        """Deferred: ``key``'s result, from the next batch."""
        waiter = defer.Deferred()
        self._waiting.setdefault(key, []).append(waiter)
        self._drain.wake()
        return waiter

    @defer.inlineCallbacks
    def _look_up_next(self):
        keys = list(self._waiting)[:self.max_keys]
        waiters = {key: self._waiting.pop(key) for key in keys}
        try:
            results = yield self.lookup(keys)
        except Exception:
            failure = Failure()
            for key_waiters in waiters.values():
                for waiter in key_waiters:
                    waiter.errback(failure)
            return
        for key, key_waiters in waiters.items():
            result = results.get(key, self.missing)
            for waiter in key_waiters:
                waiter.callback(result)
