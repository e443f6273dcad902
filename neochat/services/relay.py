"""The cell server's datagram paths: media relay and UDP key requests.

Media is never parsed beyond its header: a dict lookup (by port or by key), a
size check, a latch check, two token buckets, one ``sendto`` on the peer's
port.  The destination is an address the kernel gave (the latched source) or
one checked when the call was made, so Twisted's ``Port.write`` checks, which
parse the address again for every datagram, are skipped.  Relay ports are
read through one epoll of their own (RelayPoller), not one reactor reader each.
docs/protocol.md ("Calls") defines the datagram formats.
"""

import select

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from neochat.chat.calls import ACCEPTED, KEYED, CallError

log = Logger()

ROLE_CALLER, ROLE_CALLEE = ord("A"), ord("B")
MAX_MEDIA_HEADER = 64  # a media header line ("<key>:A") is far shorter
MAX_KEY_REQUEST = 1024
MAX_DATAGRAM = 65535  # read whole datagrams so oversize ones are seen and dropped, not truncated
ROUNDS = 64  # rounds of the readable relay ports per reactor wakeup
MAX_EVENTS = 1024  # ports per round
FEW_PORTS, BURST = 8, 64
DROP_REASONS = ("not_accepted", "oversize", "wrong_source", "rate_limited", "peer_unknown",
                "unknown_key", "send_failed", "bad_datagram", "key_flood")


class MediaRelay:
    """Forwards one party's datagrams to the other party of its call, and counts."""

    def __init__(self, clock):
        self.clock = clock
        self.counters = dict.fromkeys(("relayed_packets", "relayed_bytes", "key_requests", "keys_issued"), 0)
        self.counters.update(dict.fromkeys(("dropped_" + reason for reason in DROP_REASONS), 0))

    def relay(self, call, leg, data, source):
        """``data`` came from ``source`` for ``leg`` of ``call``: send it on to the peer."""
        counters = self.counters
        if call.state != ACCEPTED:
            counters["dropped_not_accepted"] += 1
            return
        size = len(data)
        if size > call.max_datagram:
            counters["dropped_oversize"] += 1
            return
        if leg.latched != source:
            # Latch onto the first source (a NAT may rewrite the port); with a known
            # party IP (relay mode) only that IP may latch.
            if leg.latched is not None or (leg.ip is not None and source[0] != leg.ip):
                counters["dropped_wrong_source"] += 1
                return
            leg.latched = source
        now = self.clock.seconds()
        if not leg.admit(size, now):
            counters["dropped_rate_limited"] += 1
            return
        call.last_activity = now
        peer = leg.peer
        destination = peer.latched or peer.advertised
        if destination is None:  # a keyed peer that has not sent yet
            counters["dropped_peer_unknown"] += 1
            return
        try:
            peer.out.socket.sendto(data, destination)
        except OSError:  # send buffer full, or an unusable peer address
            counters["dropped_send_failed"] += 1
            return
        counters["relayed_packets"] += 1
        counters["relayed_bytes"] += size

    def drop(self, reason):
        self.counters["dropped_" + reason] += 1


class RelayPortProtocol(DatagramProtocol):
    """One party's relay port (seed-000 relay mode): everything it receives is that party's."""

    def __init__(self, relay, call, leg):
        self.relay = relay
        self.call = call
        self.leg = leg

    def datagramReceived(self, data, source):
        self.relay.relay(self.call, self.leg, data, source)


class RelayPoller:
    """Reads every relay port through one epoll of its own, which the reactor
    watches as a single reader: one reactor event per wakeup rather than one
    per port (each of which costs Twisted a logging context and a dispatch),
    and, while many ports are busy, one ``recvfrom`` per datagram rather
    than a last one that fails with EAGAIN.  A wakeup takes up to ROUNDS
    rounds of the ports still readable.
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self._epoll = select.epoll()
        self._ports = {}  # fd -> (the socket's recvfrom, the protocol's datagramReceived)

    def fileno(self):
        return self._epoll.fileno()

    def logPrefix(self):
        return "relay"

    def add(self, port):
        """Take over the reads of a listening Twisted UDP port."""
        port.stopReading()
        fd = port.socket.fileno()
        self._ports[fd] = (port.socket.recvfrom, port.protocol.datagramReceived)
        self._epoll.register(fd, select.EPOLLIN)
        if len(self._ports) == 1:
            self.reactor.addReader(self)

    def remove(self, port):
        """Before the port closes."""
        fd = port.socket.fileno()
        if self._ports.pop(fd, None) is not None:
            self._epoll.unregister(fd)
            if not self._ports:
                self.reactor.removeReader(self)

    def doRead(self):
        poll, ports = self._epoll.poll, self._ports
        for _ in range(ROUNDS):
            ready = poll(0, MAX_EVENTS)
            if not ready:
                return
            # Many ports ready: one datagram each per round.  A few: what
            # each holds (a call flat out), up to BURST.
            burst = 1 if len(ready) > FEW_PORTS else BURST
            for fd, _ in ready:
                entry = ports.get(fd)
                if entry is None:
                    continue
                recvfrom, received = entry
                for _ in range(burst):
                    try:
                        data, source = recvfrom(MAX_DATAGRAM)
                    except OSError:  # nothing left, or an error the socket reported
                        break
                    try:
                        received(data, source)
                    except Exception:
                        log.failure("relaying a datagram")

    def connectionLost(self, reason):
        pass


class CellPortProtocol(DatagramProtocol):
    """The keyed cell port (seed 002): key requests and keyed media on one UDP port.

    A datagram whose first line is ``<key>:A`` or ``<key>:B`` is media from the
    caller (A) or callee (B) of that call; anything else is a key request.
    """

    def __init__(self, registry, relay):
        self.registry = registry
        self.relay = relay

    def datagramReceived(self, data, source):
        end = data.find(b"\n", 0, MAX_MEDIA_HEADER)
        if end > 2 and data[end - 2] == 58 and data[end - 1] in (ROLE_CALLER, ROLE_CALLEE) \
                and data.find(b" ", 0, end) < 0:  # 58 is ":"; a key request line has "name: value"
            self._media(data, end, source)
        elif len(data) <= MAX_KEY_REQUEST:
            reply = self._answer_key_request(data, source[0])
            if reply is not None:
                self.transport.write(reply, source)
        else:
            self.relay.drop("bad_datagram")

    def _media(self, data, end, source):
        call = self.registry.get(data[:end - 2].decode("latin-1"))
        if call is None or call.media != KEYED:
            self.relay.drop("unknown_key")
            return
        leg = call.caller_leg if data[end - 1] == ROLE_CALLER else call.callee_leg
        leg.out = self.transport
        self.relay.relay(call, leg, data, source)

    def _answer_key_request(self, data, source_ip):
        """The reply datagram, or None.

        Every request counts against its IP's limit, malformed or not; the first one
        over the limit in a window gets 429 and the rest no reply, so a spoofed source
        address draws a bounded number of replies.
        """
        self.relay.counters["key_requests"] += 1
        excess = self.registry.key_requests.hit(source_ip) - self.registry.limits.key_requests_per_ip
        if excess > 1:
            self.relay.drop("key_flood")
            return None
        try:
            if excess == 1:
                raise CallError("rate_limited")
            fields = parse_fields(data)
            if "user_account" not in fields or "friends" not in fields:
                raise CallError("bad_request")
            kind = fields.get("message_type", "call")
            key = self.registry.request_key(fields["user_account"], fields["friends"], kind, source_ip, counted=True)
        except CallError as error:
            return format_fields({"stat": error.stat, "reason": error.reason})
        self.relay.counters["keys_issued"] += 1
        return format_fields({"stat": 200, "connection_key": key})


def parse_fields(data):
    """``name: value`` lines up to a blank line or the end, as a dict; CallError if malformed.

    Names are lowercased and the space after the colon is optional, as in the header dialect.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CallError("bad_request") from None
    fields = {}
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            break
        name, colon, value = line.partition(":")
        if not colon:
            raise CallError("bad_request")
        fields[name.strip().lower()] = value.strip()
    return fields


def format_fields(fields):
    return "".join(f"{name}: {value}\n" for name, value in fields.items()).encode() + b"\n"
