"""The loop that batched reads and group commits share: work that arrives
within one reactor turn, or while the previous batch runs, goes into the
next batch."""

from twisted.internet import defer


class Drain:
    """``wake()`` after queueing work: in the next reactor turn (unless a
    loop runs already) ``next_batch()`` is called, and waited for, as long
    as ``waiting()`` is true; never two loops at once."""

    def __init__(self, reactor, waiting, next_batch):
        self.reactor = reactor
        self.waiting = waiting
        self.next_batch = next_batch
        self._scheduled = None
        self._running = False

    @property
    def idle(self):
        """No loop runs or is due."""
        return not self._running and self._scheduled is None

    def wake(self):
        if self.idle:
            self._scheduled = self.reactor.callLater(0, self._run)

    @defer.inlineCallbacks
    def _run(self):
        self._scheduled = None
        self._running = True
        try:
            while self.waiting():
                yield self.next_batch()
        finally:
            self._running = False
