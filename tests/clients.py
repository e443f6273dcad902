"""Test clients that talk to a real NeoChat port, one per dialect."""

import json
import socket

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from neochat.wire.headers import HeaderDecoder, encode_message

TIMEOUT = 10


class InboxClient(Protocol):
    """Collects decoded messages; ``next`` waits for one of a message_type."""

    def __init__(self):
        self.received = []
        self._waiters = []
        self.closed = defer.Deferred()

    @classmethod
    def connect(cls, port):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        return connectProtocol(endpoint, cls())

    def deliver(self, messages):
        self.received.extend(messages)
        self._wake()

    def connectionLost(self, reason):
        self.closed.callback(None)
        self._wake()

    def next(self, message_type=None, timeout=TIMEOUT, reply=False):
        """The next received message (of ``message_type``; with ``reply``, only
        a reply to our request, not a notice), removed from the inbox."""
        def match(message):
            if reply and not self.is_reply(message):
                return False
            return message_type is None or message.get("message_type") == message_type

        waiter = defer.Deferred()
        self._waiters.append((match, waiter))
        self._wake()
        timer = reactor.callLater(timeout, self._give_up, match, waiter, message_type)
        waiter.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return waiter

    def of_type(self, message_type):
        return [m for m in self.received if m.get("message_type") == message_type]

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

    def send_raw(self, data):
        self.transport.write(data)

    def close(self):
        if self.transport.connected:
            self.transport.loseConnection()
        return self.closed


class JsonClient(InboxClient):
    """Sends JSON objects, one per line; reads the server's JSON lines."""

    def __init__(self):
        super().__init__()
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self.deliver(json.loads(line) for line in lines)

    def send(self, obj, newline=True):
        self.transport.write(json.dumps(obj).encode() + (b"\n" if newline else b""))

    @defer.inlineCallbacks
    def request(self, obj, message_type=None):
        """Send ``obj`` and wait for the reply of the same message_type."""
        self.send(obj)
        reply = yield self.next(message_type or obj["message_type"], reply=True)
        return reply

    @staticmethod
    def is_reply(message):
        return message.get("content") in ("success", "fail") and "send_user" not in message

    @defer.inlineCallbacks
    def register_and_login(self, username, password="secret", **extra):
        reply = yield self.request({"message_type": "register", "username": username, "password": password})
        assert reply == {"message_type": "register", "content": "success"}, reply
        reply = yield self.request(
            {"message_type": "login", "username": username, "password": password, **extra}
        )
        assert reply == {"message_type": "login", "content": "success"}, reply

    @defer.inlineCallbacks
    def op(self, message_type, **fields):
        """An operation both dialects share: (ok, reply fields)."""
        reply = yield self.request({"message_type": message_type, **fields})
        return reply.get("content") == "success", reply


class HeaderClient(InboxClient):
    """Speaks the seed-002 header dialect.  Messages arrive as dicts of their
    headers plus ``body``; a JSON body's fields are merged in."""

    def __init__(self):
        super().__init__()
        self.decoder = HeaderDecoder()

    def dataReceived(self, data):
        messages = []
        for item in self.decoder.feed(data):
            message = dict(item.headers, body=item.body)
            if item.headers.get("content-type") == "application/json":
                message.update(json.loads(item.body))
            messages.append(message)
        self.deliver(messages)

    def send(self, headers, body=b""):
        self.transport.write(encode_message(headers, body))

    @defer.inlineCallbacks
    def request(self, headers, body=b""):
        self.send(headers, body)
        reply = yield self.next(headers["message_type"], reply=True)
        return reply

    @staticmethod
    def is_reply(message):
        return "stat" in message

    @defer.inlineCallbacks
    def register_and_login(self, account, password="secret", **extra):
        reply = yield self.request({"message_type": "registered", "user_account": account, "user_password": password})
        assert reply["stat"] == "200", reply
        reply = yield self.request(
            {"message_type": "login", "user_account": account, "user_password": password, **extra}
        )
        assert reply["stat"] == "200", reply

    @defer.inlineCallbacks
    def op(self, message_type, **fields):
        """An operation both dialects share: (ok, reply fields)."""
        headers = {"message_type": message_type}
        for name, value in fields.items():
            headers[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        reply = yield self.request(headers)
        return reply["stat"] == "200", reply


class BlockingJsonClient:
    """A blocking-socket client of the JSON dialect, as a program written from
    seed 000 would be: by default one bare ``json.dumps`` per send, no newline."""

    def __init__(self, port, newline=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.newline = newline
        self.buffer = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode("utf-8") + (b"\n" if self.newline else b""))

    def receive(self, message_type):
        """Read lines until one of ``message_type`` arrives; return it."""
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["message_type"] == message_type:
                    return message
            self._fill()

    def read_raw(self, length):
        """``length`` raw bytes (a file after ``file-data``)."""
        while len(self.buffer) < length:
            self._fill()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return data

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        assert chunk, "server closed the connection"
        self.buffer += chunk

    def login(self, name, password="pw", register=True):
        for kind in ("register", "login") if register else ("login",):
            self.send({"message_type": kind, "username": name, "password": password})
            assert self.receive(kind)["content"] == "success"

    def close(self):
        self.sock.close()
