"""Seed 002's plugin call GetMessage: a client that polls for its messages
instead of (or as well as) reading them as they are pushed."""

from twisted.internet import defer

from neochat.chat.errors import BadRequest
from neochat.chat.model import ChatMessage

PAGE, MAX_PAGE = 20, 100


@defer.inlineCallbacks
def take_pending(chat, session, count=PAGE):
    """The oldest ``count`` messages waiting for the caller, acknowledged (gone
    from the queue, committed) before they are returned; ``more`` says whether
    others still wait."""
    if not 0 < count <= MAX_PAGE:
        raise BadRequest(f"count must be 1 to {MAX_PAGE}")
    rows = yield chat.store.messages.pending(session.account, 0, count + 1)
    messages = [ChatMessage.from_row(row) for row in rows[:count]]
    if messages:
        yield chat.acknowledge(session, [message.id for message in messages])
    return {"messages": messages, "more": len(rows) > count}
