"""The WebSocket gateway: each text message is one JSON-dialect message,
handled by the same ``JsonDialect`` as on the TCP port.

``MessageTransport`` is the transport the dialect writes to: every line it
writes (even in pieces) goes out as one text message, and raw bytes written while a file
producer is registered (an in-band ``file-data`` payload) as binary
messages.  Reading pauses and resumes the WebSocket's own TCP connection, and
producers register with it, so flow control is the TCP port's.

Incoming text messages are checked to be one whole JSON value before the
decoder sees them, so a broken message cannot swallow the next one; binary
messages are raw bytes (the payload after a ``file`` offer).
"""

import json
import secrets
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny

from neochat.chat.errors import NotLoggedIn
from neochat.services.json_dialect import JsonDialect
from neochat.services.keeper import LimitKeeper
from neochat.services.limits import Limits, error_frame
from neochat.services.listening import Connections
from neochat.wire.json_stream import MAX_OBJECT

# Stand-ins fed to the decoder for a text message that is not a JSON object:
# it answers them with its usual "malformed JSON" / "not a JSON object".
NOT_JSON = b"-\n"
NOT_AN_OBJECT = b"[]\n"
# Larger messages close the socket (1009); up to here the decoder answers
# "message too long" and the socket stays.
MAX_MESSAGE = 4 * MAX_OBJECT
# A limit's refusal closes with 4000 + its stat: 4408 a deadline, 4413 too
# much data before login, 4403 a banned address (private-use close codes).
CLOSE_CODE_BASE = 4000


class MessageTransport:
    """What ``JsonDialect`` writes to, backed by one WebSocket."""

    largest_message = MAX_MESSAGE  # a text message longer than this closes the socket

    def __init__(self, protocol):
        self.protocol = protocol
        self._file_producer = None
        self._partial = []  # a line written in pieces (a voice clip streamed) goes out whole

    def write(self, data):
        if self.protocol.state != WebSocketProtocol.STATE_OPEN:
            return  # gone or closing: like TCP, late writes go nowhere
        if self._file_producer is not None:
            self.protocol.sendMessage(bytes(data), isBinary=True)
            return
        *lines, rest = bytes(data).split(b"\n")
        if lines:
            lines[0] = b"".join(self._partial) + lines[0]
            self._partial = []
        self._partial.append(rest)
        for line in lines:
            if line:
                self.protocol.sendMessage(line, isBinary=False)

    def writeSequence(self, chunks):
        self.write(b"".join(chunks))

    def loseConnection(self):
        self.protocol.sendClose()

    def pauseProducing(self):
        self.protocol.transport.pauseProducing()

    def resumeProducing(self):
        self.protocol.transport.resumeProducing()

    def registerProducer(self, producer, streaming):
        if not streaming:
            self._file_producer = producer
        self.protocol.transport.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self._file_producer = None
        self.protocol.transport.unregisterProducer()

    def getPeer(self):
        return self.protocol.transport.getPeer()

    def getHost(self):
        return self.protocol.transport.getHost()


class WebDialect(JsonDialect):
    """The JSON dialect plus ``web_token``: a bearer token for this logged-in
    session's HTTP file uploads and downloads."""

    def __init__(self, transport, chat, peer_host, tokens):
        super().__init__(transport, chat, peer_host)
        self.tokens = tokens

    def cmd_web_token(self, request):
        if not self.session.logged_in:
            raise NotLoggedIn()
        return {"message_type": "web_token", "content": "success",
                "token": self.tokens.issue(self.session)}

    def connection_lost(self):
        self.tokens.revoke(self.session)
        super().connection_lost()


class Tokens:
    """One token per WebSocket session, valid while it stays logged in."""

    def __init__(self):
        self._sessions = {}  # token -> session
        self._tokens = {}  # session -> token

    def issue(self, session):
        self.revoke(session)
        token = secrets.token_urlsafe(24)
        self._sessions[token], self._tokens[session] = session, token
        return token

    def revoke(self, session):
        self._sessions.pop(self._tokens.pop(session, None), None)

    def account(self, token):
        """The account ``token`` stands for now, or None."""
        session = self._sessions.get(token)
        if session is None or session.closed or not session.logged_in:
            return None
        return session.account

    def __len__(self):
        return len(self._sessions)


def origin_allowed(origin, host, allowed):
    """A browser's Origin must name the host it connected to (same origin),
    or be in ``allowed``; a client that sends no Origin is not a browser."""
    if origin is None or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == (host or "").lower()


class GatewayProtocol(WebSocketServerProtocol):
    """One WebSocket.  Its limits are the TCP port's, kept by a
    ``LimitKeeper`` that counts the socket's bytes as they arrive; a refusal
    is one JSON error, then a close frame with code 4000 + its stat."""

    dialect = None
    keeper = None
    counted = None  # the address this connection counts against

    def onConnect(self, request):
        host = self.transport.getPeer().host
        if self.factory.chat.accounts.admission.address_banned(host):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "address banned")  # neochatctl ban --address
        origin = request.headers.get("origin")
        if not origin_allowed(origin, request.headers.get("host"), self.factory.allowed_origins):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        if self.factory.counter is not None:  # the message server's caps count WebSockets too
            refusal = self.factory.counter.admit(host)
            if refusal is not None:
                raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, refusal)
            self.counted = host
        return None

    def onOpen(self):
        # twisted.web's channel, which handed this connection over, is still
        # registered as its producer; the dialect's producers replace it.
        self.transport.unregisterProducer()
        self.factory.connections.add(self)
        self.keeper = LimitKeeper(self.factory.limits, self.factory.clock, self._refused,
                                  self.transport.getPeer().host)
        self.dialect = WebDialect(
            MessageTransport(self), self.factory.chat, self.transport.getPeer().host, self.factory.tokens
        )
        self.keeper.attach(self.dialect)

    def dataReceived(self, data):
        # Counted as they arrive, before a message is whole.  A refused
        # socket still reads its close handshake; onMessage drops the rest.
        if self.keeper is not None:
            self.keeper.received(len(data))
        super().dataReceived(data)

    def onMessage(self, payload, isBinary):
        if self.keeper.done:
            return
        if not isBinary:
            payload = _checked(payload)
        self.dialect.data_received(payload)

    def refuse(self, stat, reason):
        """One JSON error, then the close (code 4000 + stat)."""
        self.keeper.refuse(stat, reason)

    def _refused(self, stat, reason):
        if self.state == WebSocketProtocol.STATE_OPEN:  # a text message even during a file's bytes
            self.sendMessage(error_frame(True, stat, reason).rstrip(b"\n"), isBinary=False)
        self.sendClose(CLOSE_CODE_BASE + stat, reason)

    def onClose(self, wasClean, code, reason):
        dialect, self.dialect = self.dialect, None
        try:
            if self.keeper is not None:
                self.keeper.stop()
            if dialect is not None:
                dialect.connection_lost()
        finally:
            if self.counted is not None:
                self.factory.counter.release(self.counted)
                self.counted = None
            self.factory.connections.remove(self)


def _checked(payload):
    """The text message as one newline-ended JSON object, or a stand-in."""
    try:
        value = json.loads(payload)
    except ValueError:
        return NOT_JSON
    if not isinstance(value, dict):
        return NOT_AN_OBJECT
    return payload + b"\n"  # the decoder still applies its own size limit


class GatewayFactory(WebSocketServerFactory):
    protocol = GatewayProtocol

    def __init__(self, chat, tokens, allowed_origins=(), counter=None, limits=None, clock=None):
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.chat = chat
        self.counter = counter  # a limits.ConnectionCounter, or None
        self.limits = limits or Limits()
        self.clock = clock
        self.tokens = tokens
        self.allowed_origins = set(allowed_origins)
        self.connections = Connections()
        # failByDrop off: a socket failed for a protocol error (a message too
        # big) first gets a close frame that says why (1009).
        self.setProtocolOptions(maxMessagePayloadSize=MAX_MESSAGE, maxFramePayloadSize=MAX_MESSAGE,
                                failByDrop=False)
