"""The reference the cell benchmark compares NeoChat's relay with: a bare
Twisted UDP relay.  Each call has two ports, one per party; a port latches
onto the first address that sends to it and writes every datagram to the
other port's latched address.  No keys, no limits, no counters but one.
The sockets get the same 4 MiB receive buffer as NeoChat's by default.
``bench/bench_cell.py`` runs it (``--serve bare``).
"""

import socket

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

RECEIVE_BUFFER = 4 * 1024 * 1024


class RelayPort(DatagramProtocol):
    def __init__(self, relay):
        self.relay = relay
        self.peer = None  # the other party's RelayPort
        self.latched = None

    def datagramReceived(self, data, source):
        if self.latched is None:
            self.latched = source
        destination = self.peer.latched
        if destination is not None:
            self.peer.transport.write(data, destination)
            self.relay.relayed += 1


class BareRelay:
    def __init__(self, reactor, interface="127.0.0.1"):
        self.reactor = reactor
        self.interface = interface
        self.ports = []
        self.relayed = 0

    def open_call(self):
        """Two new ports, one per party: their numbers."""
        caller, callee = RelayPort(self), RelayPort(self)
        caller.peer, callee.peer = callee, caller
        numbers = []
        for party in (caller, callee):
            port = self.reactor.listenUDP(0, party, self.interface, 65535)
            port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self.ports.append(port)
            numbers.append(port.getHost().port)
        return numbers

    def counters(self):
        return {"relayed_packets": self.relayed}

    def close_all(self):
        """Deferred: every port closed."""
        ports, self.ports = self.ports, []
        return defer.DeferredList([defer.maybeDeferred(port.stopListening) for port in ports])

    stop = close_all
