"""The message server: one TCP port, both dialects."""

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from neochat.services.header_dialect import HeaderDialect
from neochat.services.json_dialect import JsonDialect
from neochat.wire.json_stream import BOM

WHITESPACE = b" \t\r\n"


@implementer(IHalfCloseableProtocol)
class ChatProtocol(Protocol):
    """Picks the dialect from the first non-blank byte: ``{`` means JSON.

    A client that half-closes (``nc -q1``) still gets every reply: what it
    sent in full runs, and the connection closes after the last answer.
    """

    def __init__(self, factory):
        self.factory = factory
        self.dialect = None
        self._early = b""

    def connectionMade(self):
        self.factory.connections.add(self)

    def dataReceived(self, data):
        if self.dialect is None:
            data = (self._early + data).lstrip(WHITESPACE)
            self._early = b""
            if data.startswith(BOM):  # a byte order mark before the first message
                data = data[len(BOM):].lstrip(WHITESPACE)
            if BOM.startswith(data):  # nothing yet, or the start of a byte order mark
                self._early = data
                return
            self.dialect = self.factory.dialect_for(data[:1])(
                self.transport, self.factory.chat, self.transport.getPeer().host
            )
        self.dialect.data_received(data)

    def readConnectionLost(self):
        if self.dialect is None:
            self.transport.loseConnection()
        else:
            self.dialect.input_ended()

    def writeConnectionLost(self):
        """Only we could shut our side, and we never half-close."""
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.connections.discard(self)
        if self.dialect is not None:
            self.dialect.connection_lost()
        if not self.factory.connections and self.factory.all_gone is not None:
            self.factory.all_gone.callback(None)
            self.factory.all_gone = None


class ChatFactory(Factory):
    def __init__(self, chat, dialects):
        self.chat = chat
        self.dialects = dialects  # first byte -> Dialect class; None: default
        self.connections = set()
        self.all_gone = None

    def buildProtocol(self, addr):
        return ChatProtocol(self)

    def dialect_for(self, first_byte):
        return self.dialects.get(first_byte, self.dialects[None])

    def disconnect_all(self):
        """Drop every connection; the Deferred fires when all are gone."""
        if not self.connections:
            return defer.succeed(None)
        self.all_gone = defer.Deferred()
        for connection in list(self.connections):
            connection.transport.loseConnection()
        return self.all_gone


def default_dialects():
    """``{`` opens a JSON object (``[`` a JSON array, answered with an error
    that asks for an object); anything else starts a header line."""
    return {b"{": JsonDialect, b"[": JsonDialect, None: HeaderDialect}


class ChatService(service.Service):
    """Listens on each endpoint description; on stop, closes the listeners,
    drops the connections and finishes every accepted write."""

    def __init__(self, chat, listen, reactor):
        self.chat = chat
        self.factory = ChatFactory(chat, default_dialects())
        self.endpoints = [serverFromString(reactor, description) for description in listen]
        self.ports = []

    def startService(self):
        """Returns a Deferred that fires with the listening ports."""
        super().startService()
        listening = defer.gatherResults(
            [endpoint.listen(self.factory) for endpoint in self.endpoints], consumeErrors=True
        )
        return listening.addCallback(self._listening)

    def _listening(self, ports):
        self.ports = ports
        return ports

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield defer.gatherResults([port.stopListening() for port in self.ports])
        self.ports = []
        yield self.factory.disconnect_all()
        yield self.chat.drain()
