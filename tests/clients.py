"""Test clients that talk to a real NeoChat port."""

import json

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

TIMEOUT = 10


class JsonClient(Protocol):
    """Sends JSON objects, one per line; collects the server's JSON lines."""

    def __init__(self):
        self.received = []
        self._waiters = []
        self._buffer = b""
        self.closed = defer.Deferred()

    @classmethod
    def connect(cls, port):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        return connectProtocol(endpoint, cls())

    def dataReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.received.append(json.loads(line))
        self._wake()

    def connectionLost(self, reason):
        self.closed.callback(None)
        self._wake()

    def send(self, obj, newline=True):
        self.transport.write(json.dumps(obj).encode() + (b"\n" if newline else b""))

    def send_raw(self, data):
        self.transport.write(data)

    def next(self, message_type=None, timeout=TIMEOUT):
        """The next received message (of ``message_type``), removed from the inbox."""
        def match(message):
            return message_type is None or message.get("message_type") == message_type

        waiter = defer.Deferred()
        self._waiters.append((match, waiter))
        self._wake()
        timer = reactor.callLater(timeout, self._give_up, match, waiter, message_type)
        waiter.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return waiter

    def _give_up(self, match, waiter, message_type):
        self._waiters.remove((match, waiter))
        waiter.errback(AssertionError(f"no {message_type or 'message'} within {TIMEOUT}s; inbox {self.received}"))

    def _wake(self):
        for match, waiter in list(self._waiters):
            for message in self.received:
                if match(message):
                    self.received.remove(message)
                    self._waiters.remove((match, waiter))
                    waiter.callback(message)
                    break

    @defer.inlineCallbacks
    def request(self, obj, message_type=None):
        """Send ``obj`` and wait for the reply of the same message_type."""
        self.send(obj)
        reply = yield self.next(message_type or obj["message_type"])
        return reply

    @defer.inlineCallbacks
    def register_and_login(self, username, password="secret", **extra):
        reply = yield self.request({"message_type": "register", "username": username, "password": password})
        assert reply == {"message_type": "register", "content": "success"}, reply
        reply = yield self.request(
            {"message_type": "login", "username": username, "password": password, **extra}
        )
        assert reply == {"message_type": "login", "content": "success"}, reply

    def close(self):
        if self.transport.connected:
            self.transport.loseConnection()
        return self.closed
