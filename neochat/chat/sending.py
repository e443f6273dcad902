"""One message send on its way: its checks, its turn in the session's line,
the group commit, delivery.

The path allocates no Deferred but the one the caller waits on: the
session's line (Session.in_line) and the store's group commit
(MessageStore.queue) call plain methods, so that a message costs a few
small objects rather than a chain of Deferreds and generators.
"""

import time

from twisted.internet import defer
from twisted.python.failure import Failure

from neochat.chat.errors import Conflict, Forbidden, NotFound
from neochat.store.database import ClientIdReused, MissingReference, NotAMember


class Send:
    """``sent`` fires with the message once it is committed and, unless it
    is a resend, delivered by ``deliver(message, stored)``; or fails with
    the refusal.  ``checks``: None, or a Deferred whose failure refuses the
    message before it is stored.  ``chat`` holds the store, the sends in
    flight (shutdown waits for them) and the commit latency histogram."""

    __slots__ = ("chat", "session", "message", "deliver", "pending_for", "group", "ready", "refusal", "sent")

    def __init__(self, chat, session, message, deliver, pending_for=(), group=False, checks=None):
        self.chat = chat
        self.session = session
        self.message = message
        self.deliver = deliver
        self.pending_for = pending_for
        self.group = group
        self.ready = checks is None
        self.refusal = None
        self.sent = defer.Deferred()
        chat.in_flight.add(self.sent)
        if checks is not None:
            checks.addCallbacks(self._checked, self._refused)
        session.in_line(self)

    def _checked(self, _):
        self.ready = True
        self.session.advance()

    def _refused(self, failure):
        self.refusal = failure
        self._checked(None)

    def store(self):
        """Its turn in the session's line."""
        if self.refusal is not None:
            self._finish(self.refusal)
        else:
            self.chat.store.messages.queue(self.message, self._stored, self.pending_for, self.group)

    def _stored(self, result):
        if isinstance(result, Exception):
            return self._finish(_refusal(result, self.message))
        message = self.message
        message.id, message.create_time = result.id, result.create_time
        self.chat.commit_latency.observe(time.monotonic() - message.arrived)
        if not result.duplicate:
            try:
                self.deliver(message, result)
            except Exception:
                return self._finish(Failure())
        self._finish(message)

    def _finish(self, outcome):
        self.chat.in_flight.discard(self.sent)
        if isinstance(outcome, (Exception, Failure)):
            self.sent.errback(outcome)
        else:
            self.sent.callback(outcome)


def _refusal(error, message):
    """The store's refusal as the client hears it."""
    if isinstance(error, ClientIdReused):
        return Conflict("client_id reused")
    if isinstance(error, NotAMember):
        return Forbidden("not a member")
    if isinstance(error, MissingReference):
        if message.rece_user is not None:
            return NotFound("unknown recipient")
        if message.group_id is not None:
            return NotFound("unknown group")
    return error
