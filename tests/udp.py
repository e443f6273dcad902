"""UDP helpers for call tests: client sockets on loopback, keyed media, free port numbers."""

import socket

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol

LOCAL = "127.0.0.1"


class Party(DatagramProtocol):
    """A UDP client socket on loopback that queues what it receives."""

    def __init__(self):
        self.inbox = defer.DeferredQueue()

    def datagramReceived(self, data, source):
        self.inbox.put((data, source))

    def send(self, data, address):
        self.transport.write(data, address)

    def send_to_other(self, data, fields):
        self.send(data, (fields["other_ip"], fields["other_port"]))

    def next(self):
        return self.inbox.get().addTimeout(2, reactor)

    @property
    def port(self):
        return self.transport.getHost().port


class UdpSockets:
    """Client sockets of one test, closed at teardown."""

    def __init__(self):
        self.ports = []

    def party(self, port=0, interface=LOCAL):
        party = Party()
        self.ports.append(reactor.listenUDP(port, party, interface))
        return party

    async def close(self):
        for port in self.ports:
            await port.stopListening()


def cell_address(cell):
    """Where the CellService's keyed cell port listens."""
    return (LOCAL, cell.cell_port.getHost().port)


def media(key, role, payload):
    """A keyed media datagram: role A (caller) or B (callee), then the payload."""
    return f"{key}:{role}\n".encode() + payload


def free_port_range(count):
    """First and last of ``count`` consecutive loopback UDP ports that were free just now."""
    while True:
        probes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
        try:
            probes[0].bind((LOCAL, 0))
            first = probes[0].getsockname()[1]
            if first + count - 1 > 65535:
                continue
            for number in range(first + 1, first + count):
                probes.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                probes[-1].bind((LOCAL, number))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def port_is_free(number):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOCAL, number))
        except OSError:
            return False
        return True


async def wait_for(predicate, seconds=2):
    for _ in range(int(seconds * 100)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"condition not reached in {seconds} s")
