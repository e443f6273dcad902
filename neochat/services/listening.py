"""What the message server and the web client share as Twisted services:
listening on endpoint descriptions (``ssl:`` ones with the modern TLS
settings of ``tls.py``), and dropping every connection on stop."""

from twisted.application import service
from twisted.internet import defer

from neochat.services.tls import server_endpoint


class Connections:
    """The open connections of one server.  Each has a ``transport``;
    ``disconnect_all`` drops them and fires once the last is gone."""

    def __init__(self):
        self._open = set()
        self._all_gone = None

    def add(self, connection):
        self._open.add(connection)

    def remove(self, connection):
        self._open.discard(connection)
        if not self._open and self._all_gone is not None:
            all_gone, self._all_gone = self._all_gone, None
            all_gone.callback(None)

    def __iter__(self):
        return iter(list(self._open))

    def __len__(self):
        return len(self._open)

    def disconnect_all(self):
        if not self._open:
            return defer.succeed(None)
        self._all_gone = defer.Deferred()
        for connection in list(self._open):
            connection.transport.loseConnection()
        return self._all_gone


class ListeningService(service.Service):
    """Listens with ``factory`` on each endpoint description; ``ports`` are
    the listening ports once started."""

    def __init__(self, factory, listen, reactor):
        self.factory = factory
        self.endpoints = [server_endpoint(reactor, description) for description in listen]
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

    def stop_listening(self):
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in ports])
