"""The cell server: a UDP service that carries call media between two parties.

Two ways in:

- Seed 002 (keyed): the cell port answers key requests and relays datagrams
  framed with the call's key.  Any call made by ``registry.request_key``.
- Seed 000 (voice): ``start_voice_call`` gives each party four address fields.
  In ``relay`` mode each party gets a relay port of its own on this server; in
  ``p2p`` mode the parties get each other's addresses and nothing is relayed.

Either way the chat server signals: it accepts and closes calls through
``registry`` and tells both sides when ``registry.on_call_ended`` fires.
docs/protocol.md ("Calls") is the full description.
"""

import random
import socket

from twisted.application import service
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from neochat.chat.calls import P2P, RELAY, CallError, CallLimits, CallRegistry
from neochat.services.relay import MAX_DATAGRAM, CellPortProtocol, MediaRelay, RelayPoller, RelayPortProtocol

ANY_INTERFACE = ("", "0.0.0.0", "::")
# Bytes of SO_RCVBUF and SO_SNDBUF: the kernel's default (208 KiB) overflows at a
# few hundred calls.  Linux caps it at net.core.rmem_max / wmem_max.
UDP_BUFFER = 4 * 1024 * 1024
_random = random.SystemRandom()
log = Logger()


class PortRange:
    """Port numbers first..last handed out at random, skipping those in use, so
    nobody can guess the next one.

    ``PortRange(0, 0)`` means "any free port": it only ever offers 0.
    """

    RANDOM_TRIES = 16  # then a scan from a random place finds what is left

    def __init__(self, first, last):
        if not (0 <= first <= last <= 65535) or (first == 0 and last != 0):
            raise ValueError(f"bad port range {first}-{last}")
        self.first = first
        self.size = last - first + 1

    def candidates(self, in_use):
        for _ in range(self.RANDOM_TRIES):
            number = self.first + _random.randrange(self.size)
            if number not in in_use:
                yield number
        start = _random.randrange(self.size)
        for step in range(self.size):
            number = self.first + (start + step) % self.size
            if number not in in_use:
                yield number


class CellService(service.Service):
    """Owns the keyed cell port and every relay port; ``stopService`` closes them all.

    ``calls`` is a CallRegistry, or the CallLimits for a new one on ``reactor``.
    ``relay_ports`` and ``client_ports`` are (first, last) ranges: relay ports are
    bound on ``interface`` (``(0, 0)``: any free port); client ports are the
    ``your_port`` numbers handed to parties, unique per party IP among live calls.
    """

    def __init__(self, calls=None, interface="0.0.0.0", port=10010, relay_ports=(40000, 40999),
                 client_ports=(41000, 41999), advertised_ip=None, mode=RELAY, reactor=None,
                 udp_buffer=UDP_BUFFER):
        if reactor is None:
            from twisted.internet import reactor
        if mode not in (RELAY, P2P):
            raise ValueError(f"mode must be {RELAY!r} or {P2P!r}")
        if advertised_ip is None and interface in ANY_INTERFACE and mode == RELAY:
            raise ValueError("relay mode on all interfaces needs advertised_ip")
        self.reactor = reactor
        self.registry = calls if isinstance(calls, CallRegistry) else CallRegistry(calls or CallLimits(), reactor)
        self.interface = interface
        self.port_number = port
        self.relay_ports = PortRange(*relay_ports)
        self.client_ports = PortRange(*client_ports)
        if self.client_ports.first == 0:
            raise ValueError("client ports must be real port numbers")
        self.advertised_ip = advertised_ip or interface
        self.mode = mode
        self.udp_buffer = udp_buffer
        self.relay = MediaRelay(self.registry.clock)
        self.relay_poller = RelayPoller(reactor)
        self.cell_port = None
        self._relay_in_use = set()
        self._client_in_use = {}  # party IP -> client port numbers given out
        self._closing = set()  # Deferreds of relay ports still closing

    def startService(self):
        super().startService()
        protocol = CellPortProtocol(self.registry, self.relay)
        self.cell_port = self._listen(self.port_number, protocol)
        sizes = self.buffer_sizes()
        log.info("cell port buffers: receive {receive} bytes, send {send} bytes (asked {asked})",
                 asked=self.udp_buffer, **sizes)
        if self.udp_buffer and min(sizes.values()) < self.udp_buffer:
            log.warn("the kernel capped the UDP buffers below --udp-buffer: raise net.core.rmem_max "
                     "and net.core.wmem_max to get more (docs/protocol.md, Calls)")

    def stopService(self):
        super().stopService()
        self.registry.close_all("shutdown")
        if self.cell_port is not None:
            self._track_closing(self.cell_port.stopListening())
            self.cell_port = None
        return self.wait_ports_closed()

    def wait_ports_closed(self):
        """A Deferred that fires once every port closed so far has finished closing."""
        return defer.DeferredList(list(self._closing)).addCallback(lambda _: None)

    def start_voice_call(self, caller, callee, caller_ip, callee_ip, kind="voice", key=None):
        """Seed 000: create a call whose media uses this service's mode; returns the Call.

        The IPs are each party's TCP peer address, as the chat server sees it
        (another node's, for a party there); ``key`` one made beforehand.
        Raises CallError like ``registry.create_call``, ``bad_request`` for an IP
        that is not an address, or ``server_full`` when no port is left or the
        service is stopped.
        """
        if not self.running:
            raise CallError("server_full")
        call = self.registry.create_call(caller, callee, kind, self.mode, key=key)
        try:
            for leg, ip in ((call.caller_leg, caller_ip), (call.callee_leg, callee_ip)):
                self._open_leg(call, leg, ip)
        except CallError:
            self.registry.discard(call.key)
            raise
        return call

    def party_addresses(self, key, account):
        """Seed 000's four fields for one party of a ``start_voice_call`` call.

        Returns {"other_ip", "other_port", "your_ip", "your_port"}: the party binds
        your_port, sends to other_ip:other_port and receives on your_port.
        """
        call = self.registry.get(key)
        if call is None:
            raise CallError("no_such_call")
        if call.media not in (RELAY, P2P):
            raise CallError("bad_request")
        leg = call.leg_of(account)
        if call.media == RELAY:
            other_ip, other_port = self.advertised_ip, leg.relay_port
        else:
            other_ip, other_port = leg.peer.advertised
        return {"other_ip": other_ip, "other_port": other_port, "your_ip": leg.ip, "your_port": leg.client_port}

    def buffer_sizes(self):
        """What the kernel gave the cell port: {"receive": bytes, "send": bytes}.
        Linux reports twice the size asked (it counts its bookkeeping), within its cap."""
        sock = self.cell_port.socket
        return {"receive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                "send": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)}

    def cell_address(self):
        """Where parties send keyed media: the advertised IP and the cell port."""
        return self.advertised_ip, self.cell_port.getHost().port

    def counters(self):
        """Relayed packets/bytes, drops by reason, key requests, and live calls."""
        return dict(self.relay.counters, calls=len(self.registry))

    def _open_leg(self, call, leg, ip):
        if not (isIPAddress(ip) or isIPv6Address(ip)):
            raise CallError("bad_request")
        leg.ip = ip
        leg.client_port = next(self.client_ports.candidates(self._client_in_use.get(ip, ())), None)
        if leg.client_port is None:
            raise CallError("server_full")
        self._client_in_use.setdefault(ip, set()).add(leg.client_port)
        leg.advertised = (ip, leg.client_port)
        call.cleanups.append(lambda: self._release_client_port(ip, leg.client_port))
        if call.media == RELAY:
            port = self._listen_relay(RelayPortProtocol(self.relay, call, leg))
            self.relay_poller.add(port)
            leg.relay_port = port.getHost().port
            leg.out = port
            self._relay_in_use.add(leg.relay_port)
            call.cleanups.append(lambda: self._close_relay_port(port, leg.relay_port))

    def _listen_relay(self, protocol):
        for number in self.relay_ports.candidates(self._relay_in_use):
            try:
                return self._listen(number, protocol)
            except CannotListenError:
                continue  # taken by another program
        raise CallError("server_full")

    def _listen(self, number, protocol):
        """A UDP port with buffers big enough for bursts."""
        port = self.reactor.listenUDP(number, protocol, self.interface, MAX_DATAGRAM)
        if self.udp_buffer:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                port.socket.setsockopt(socket.SOL_SOCKET, option, self.udp_buffer)
        return port

    def _release_client_port(self, ip, number):
        in_use = self._client_in_use[ip]
        in_use.discard(number)
        if not in_use:
            del self._client_in_use[ip]

    def _close_relay_port(self, port, number):
        self._relay_in_use.discard(number)
        self.relay_poller.remove(port)
        self._track_closing(port.stopListening())

    def _track_closing(self, closed):
        def forget(result):
            self._closing.discard(closed)
            return result

        if closed is not None:
            self._closing.add(closed)
            closed.addBoth(forget)
