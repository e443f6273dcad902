"""The message server: one TCP port, both dialects, and the limits
(``services/limits.py``) that keep one client from exhausting it."""

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from neochat.services.header_dialect import HeaderDialect
from neochat.services.json_dialect import JsonDialect
from neochat.services.keeper import LimitKeeper
from neochat.services.listening import Connections, ListeningService
from neochat.services.limits import (
    ConnectionCounter, Limits, error_frame, raise_descriptor_limit, total_connections,
)
from neochat.wire.json_stream import BOM

WHITESPACE = b" \t\r\n"
REFUSAL_GRACE = 1.0  # seconds a refused connection has to show its dialect
REFUSALS_WAITING = 64  # refused connections given that grace at once; the rest are closed at once


@implementer(IHalfCloseableProtocol)
class ChatProtocol(Protocol):
    """Picks the dialect from the first non-blank byte: ``{`` means JSON.

    A client that half-closes (``nc -q1``) still gets every reply: what it
    sent in full runs, and the connection closes after the last answer.
    Its limits are kept by a ``LimitKeeper`` (``services/keeper.py``).
    """

    def __init__(self, factory, address):
        self.factory = factory
        self.address = address
        self.dialect = None
        self.keeper = None
        self._early = b""

    def connectionMade(self):
        self.factory.connections.add(self)
        self.keeper = LimitKeeper(self.factory.limits, self.factory.clock, self._refused, self.address)

    def dataReceived(self, data):
        if not self.keeper.received(len(data)):
            return
        if self.dialect is None:
            data = (self._early + data).lstrip(WHITESPACE)
            self._early = b""
            if data.startswith(BOM):  # a byte order mark before the first message
                data = data[len(BOM):].lstrip(WHITESPACE)
            if BOM.startswith(data):  # nothing yet, or the start of a byte order mark
                self._early = data
                return
            self._start_dialect(data[:1])
        self.dialect.data_received(data)

    def _start_dialect(self, first_byte):
        self.dialect = self.factory.dialect_for(first_byte)(
            self.transport, self.factory.chat, self.transport.getPeer().host
        )
        self.keeper.attach(self.dialect)

    def refuse(self, stat, reason):
        """One error line in the connection's dialect (the header dialect if
        it has sent nothing yet), then close."""
        self.keeper.refuse(stat, reason)

    def _refused(self, stat, reason):
        self.transport.write(error_frame(isinstance(self.dialect, JsonDialect), stat, reason))
        self.transport.loseConnection()

    def readConnectionLost(self):
        if self.dialect is None:
            self.transport.loseConnection()
        else:
            self.dialect.input_ended()

    def writeConnectionLost(self):
        """Only we could shut our side, and we never half-close."""
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.keeper.stop()  # nothing more to limit
        self.factory.counter.release(self.address)
        if self.dialect is not None:
            self.dialect.connection_lost()
        self.factory.connections.remove(self)


class Refusal(Protocol):
    """A connection over a cap: one error in the dialect of its first bytes
    (the header dialect if none come within REFUSAL_GRACE), then closed."""

    def __init__(self, factory, reason):
        self.factory = factory
        self.reason = reason
        self._timer = None

    def connectionMade(self):
        self.factory.refusals.add(self)
        if len(self.factory.refusals) > REFUSALS_WAITING:
            self._refuse(json_dialect=False)
        else:
            self._timer = self.factory.clock.callLater(REFUSAL_GRACE, self._refuse, False)

    def dataReceived(self, data):
        first = data.lstrip(WHITESPACE).removeprefix(BOM).lstrip(WHITESPACE)[:1]
        if first and self.transport.connected:
            self._refuse(self.factory.dialect_for(first) is JsonDialect)

    def _refuse(self, json_dialect):
        self._cancel()
        self.transport.write(error_frame(json_dialect, 503, self.reason))
        self.transport.loseConnection()

    def _cancel(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason):
        self._cancel()
        self.factory.refusals.discard(self)


class ChatFactory(Factory):
    def __init__(self, chat, dialects, limits=None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.chat = chat
        self.dialects = dialects  # first byte -> Dialect class; None: default
        self.limits = limits or Limits()
        self.clock = clock
        self.counter = ConnectionCounter(self.limits.connections_per_address, self.limits.connections_total)
        self.connections = Connections()
        self.refusals = set()

    def buildProtocol(self, addr):
        address = getattr(addr, "host", "local")
        if self.chat.accounts.admission.address_banned(address):
            return None  # neochatctl ban --address: the connection is closed at once
        refusal = self.counter.admit(address)
        if refusal is not None:
            return Refusal(self, refusal)
        return ChatProtocol(self, address)

    def dialect_for(self, first_byte):
        return self.dialects.get(first_byte, self.dialects[None])

    def disconnect_all(self):
        """Drop every connection; the Deferred fires when all are gone."""
        for refusal in list(self.refusals):
            refusal.transport.loseConnection()
        return self.connections.disconnect_all()


def default_dialects():
    """``{`` opens a JSON object (``[`` a JSON array, answered with an error
    that asks for an object); anything else starts a header line."""
    return {b"{": JsonDialect, b"[": JsonDialect, None: HeaderDialect}


class ChatService(ListeningService):
    """Listens on each endpoint description; on stop, closes the listeners,
    drops the connections and finishes every accepted write."""

    def __init__(self, chat, listen, reactor, limits=None):
        super().__init__(ChatFactory(chat, default_dialects(), limits, reactor), listen, reactor)
        self.chat = chat

    def startService(self):
        """Returns a Deferred that fires with the listening ports."""
        self.factory.counter.total = total_connections(self.factory.limits, raise_descriptor_limit())
        return super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.stop_listening()
        yield self.factory.disconnect_all()
        yield self.chat.drain()
