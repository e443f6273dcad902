"""One TCP connection of the client library, speaking the JSON dialect.

It frames with the server's own codec (``neochat.wire.json_stream``), matches
replies to requests, hands everything else (pushed messages, notices) to a
callback, and carries the in-band file transfer: an offer's raw bytes go out
right after the offer, and a ``file-data`` reply's raw bytes are streamed to
a file.

Replies are matched per ``message_type``, first in first out: the server
runs one connection's requests one at a time, in order, and each request sent
with ``request`` gets exactly one reply of its type (``file-data`` answers a
file ``accept``).  A reply is told from a push by ``content`` being
``success`` or ``fail`` without a ``send_user``.
"""

from collections import deque

from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import FileSender

from neochat.wire.json_stream import JsonStreamDecoder, Malformed, RawChunk, encode

REPLY_TYPES = {"file-data": "file"}  # reply message_type -> request message_type
MAX_IN_FLIGHT = 4_000  # requests unanswered on one connection (above the outbox and waiting limits)


class LimitReached(Exception):
    """A bounded queue of the client is full; try again later."""


class RequestFailed(Exception):
    """The server answered ``fail``; ``reason`` is its reason."""

    def __init__(self, message_type, reason):
        super().__init__(f"{message_type}: {reason}")
        self.message_type = message_type
        self.reason = reason


def is_reply(message):
    if message.get("message_type") == "file-data":
        return True
    return message.get("content") in ("success", "fail") and "send_user" not in message


class Download:
    """Where the raw bytes after a ``file-data`` reply go."""

    def __init__(self, target, progress=None):
        self.target = target  # an open binary file
        self.progress = progress  # progress(done, total) or None
        self.length = 0
        self.done = 0


class ClientConnection(Protocol):
    """``on_push(message)`` receives every message that is not a reply;
    ``on_lost(reason)`` is called once when the connection closes."""

    def __init__(self, on_push, on_lost=None):
        self.on_push = on_push
        self.on_lost = on_lost
        self.decoder = JsonStreamDecoder()
        self._waiting = {}  # message_type -> deque of (Deferred, Download or None)
        self._download = None  # (Deferred, Download) while raw bytes arrive
        self._held = None  # writes queued while a file's bytes are going out
        self.lost = False

    def itself(self):
        """This connection, also when called through a wrapping proxy."""
        return self

    # -- sending -----------------------------------------------------------

    def send(self, message):
        data = encode(message)
        if self._held is not None:
            self._held.append(data)
        elif not self.lost:
            self.transport.write(data)

    def request(self, message, download=None):
        """Send ``message``; a Deferred firing with the reply (``RequestFailed``
        on ``fail``, ``ConnectionLost`` if the connection closes first)."""
        if self.lost:
            return defer.fail(ConnectionLost("not connected"))
        if sum(len(queue) for queue in self._waiting.values()) >= MAX_IN_FLIGHT:
            return defer.fail(LimitReached(f"{MAX_IN_FLIGHT} requests already wait for their reply"))
        waiter = defer.Deferred()
        self._waiting.setdefault(message["message_type"], deque()).append((waiter, download))
        self.send(message)
        return waiter

    @defer.inlineCallbacks
    def send_file(self, offer, source, progress=None):
        """The offer, then the bytes of ``source`` (an open binary file of
        ``offer["file_length"]`` bytes); fires with the server's receipt."""
        if self._held is not None:
            raise RuntimeError("a file is already being sent on this connection")
        reply = self.request(offer)
        self._held = []
        try:
            yield FileSender().beginFileTransfer(_Counting(source, offer["file_length"], progress), self.transport)
        finally:
            held, self._held = self._held, None
            if not self.lost:
                self.transport.writeSequence(held)
        return (yield reply)

    # -- receiving ---------------------------------------------------------

    def dataReceived(self, data):
        self.decoder.feed(data)
        while not self.lost:
            item = self.decoder.next_item()
            if item is None:
                return
            if isinstance(item, RawChunk):
                self._raw(item)
            elif isinstance(item, Malformed):
                self.on_push({"message_type": "error", "content": "fail", "reason": item.reason})
            elif is_reply(item):
                self._reply(item)
            else:
                self.on_push(item)

    def _reply(self, message):
        message_type = message.get("message_type")
        queue = self._waiting.get(REPLY_TYPES.get(message_type, message_type))
        if not queue:
            self.on_push(message)  # a failure of a request that has no success reply
            return
        waiter, download = queue.popleft()
        if message.get("content") == "fail":
            waiter.errback(RequestFailed(message_type, message.get("reason", "")))
        elif message_type == "file-data":
            download.length = message["file_length"]
            if download.length == 0:
                waiter.callback(message)
            else:
                self._download = (waiter, download, message)
                self.decoder.expect_raw(download.length)
        else:
            waiter.callback(message)

    def _raw(self, chunk):
        waiter, download, header = self._download
        download.target.write(chunk.data)
        download.done += len(chunk.data)
        if download.progress is not None:
            download.progress(download.done, download.length)
        if chunk.last:
            self._download = None
            waiter.callback(header)

    def connectionLost(self, reason):
        self.lost = True
        failures = [waiter for queue in self._waiting.values() for waiter, _ in queue]
        if self._download is not None:
            failures.append(self._download[0])
        self._waiting.clear()
        self._download = None
        for waiter in failures:
            waiter.errback(ConnectionLost("connection lost before the reply"))
        if self.on_lost is not None:
            self.on_lost(reason)


class _Counting:
    """A file for FileSender that reports progress and stops at ``length``."""

    def __init__(self, source, length, progress):
        self.source, self.left, self.length, self.progress = source, length, length, progress

    def read(self, size):
        data = self.source.read(min(size, self.left))
        self.left -= len(data)
        if self.progress is not None and data:
            self.progress(self.length - self.left, self.length)
        return data
