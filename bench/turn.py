"""coturn as a relay for bench/bench_cell.py's workloads (run_step and
run_flat_out), with a minimal TURN client (RFC 8656, formerly 5766).

coturn runs as Debian packages it (``apt-get install coturn``), on a free
loopback port with a throwaway directory, UDP only and without
authentication (``--no-auth``: the requests carry no MESSAGE-INTEGRITY; data
never does).  Each call is one allocation, the caller's, with a channel bound
to the callee's address; the callee sends plain datagrams to the relayed
address.  So every datagram crosses the relay once, as with NeoChat's relay:
the caller's go out as ChannelData (4 bytes of header) and come back to it
the same way.
"""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import psutil

from bench.bench_cell import LOCAL, Measured
from bench.server import free_port

MAGIC = 0x2112A442
BINDING, ALLOCATE, REFRESH, CHANNEL_BIND = 0x0001, 0x0003, 0x0004, 0x0009
SUCCESS, ERROR = 0x0100, 0x0110
CHANNEL_NUMBER, LIFETIME, XOR_PEER_ADDRESS, XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = (
    0x000C, 0x000D, 0x0012, 0x0016, 0x0019)
UDP = b"\x11\0\0\0"
CHANNEL = 0x4000
TIMEOUT = 5  # seconds for a TURN request's answer


def installed():
    return shutil.which("turnserver") is not None


def message(method, *attributes):
    """(transaction id, a STUN request ``method`` with ``attributes`` [(type, value)])."""
    body = b"".join(struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)
                    for kind, value in attributes)
    transaction = os.urandom(12)
    return transaction, struct.pack("!HHI", method, len(body), MAGIC) + transaction + body


def xor_address(host, port):
    address = int.from_bytes(socket.inet_aton(host), "big") ^ MAGIC
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC >> 16), address)


def read_xor_address(value):
    port, address = struct.unpack_from("!HI", value, 2)
    return socket.inet_ntoa((address ^ MAGIC).to_bytes(4, "big")), port ^ (MAGIC >> 16)


def request(sock, server, method, *attributes):
    """Sends a request and waits for its answer: {type: value} of a success,
    else an AssertionError with the error answer."""
    transaction, data = message(method, *attributes)
    sock.sendto(data, server)
    while True:
        answer = sock.recv(2048)
        if answer[8:20] == transaction:
            break
    kind, length = struct.unpack_from("!HH", answer)
    assert kind == method | SUCCESS, f"TURN request {method:#06x} failed: {answer!r}"
    found, offset = {}, 20
    while offset < 20 + length:
        kind, size = struct.unpack_from("!HH", answer, offset)
        found[kind] = answer[offset + 4:offset + 4 + size]
        offset += 4 + size + (-size % 4)
    return found


class ChannelSocket:
    """A TURN client's socket, as run_step uses a socket: what it sends goes
    out as ChannelData on one channel, what it receives is the payload."""

    def __init__(self, sock, channel):
        self.sock = sock
        self.channel = channel

    def sendto(self, data, address):
        return self.sock.sendto(struct.pack("!HH", self.channel, len(data)) + data, address)

    def recv(self, size):
        return self.sock.recv(size + 4)[4:]

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


class Coturn(Measured):
    """A turnserver process, as a relay for bench_cell.run_step, pinned to
    ``cpu`` if given (with taskset, so its relay threads are too)."""

    def __init__(self, cpu=None):
        self.directory = tempfile.TemporaryDirectory(prefix="bench-coturn-")
        self.server = (LOCAL, free_port(socket.SOCK_DGRAM))
        data = self.directory.name
        command = ["turnserver", "-n", "--listening-ip", LOCAL, "--relay-ip", LOCAL,
                   "--listening-port", str(self.server[1]), "--no-auth", "--allow-loopback-peers",
                   "--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli",
                   "--userdb", f"{data}/turndb", "--log-file", f"{data}/turn.log", "--simple-log",
                   "--no-stdout-log", "--pidfile", f"{data}/turnserver.pid"]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stats = psutil.Process(self.process.pid)
        self.allocations = []  # the callers' sockets
        self.rounds = 0
        self._wait_ready()

    def _wait_ready(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            deadline = time.monotonic() + 30
            while True:
                try:
                    request(probe, self.server, BINDING)
                    return
                except OSError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.process.kill()
                        raise SystemExit(f"turnserver did not start: see {self.directory.name}/turn.log")

    def open_parties(self, calls):
        """[(caller's channel socket, coturn), (callee's socket, the caller's relayed address)] per call."""
        parties = []
        # coturn remembers deleted allocations' 5-tuples for a while: each
        # round's callers come from a loopback address of their own
        self.rounds += 1
        caller_host = f"127.2.{self.rounds // 250}.{1 + self.rounds % 250}"
        for _ in range(calls):
            caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            caller.bind((caller_host, 0))
            callee.bind((LOCAL, 0))
            caller.settimeout(TIMEOUT)
            relayed = read_xor_address(request(caller, self.server, ALLOCATE,
                                               (REQUESTED_TRANSPORT, UDP))[XOR_RELAYED_ADDRESS])
            request(caller, self.server, CHANNEL_BIND, (CHANNEL_NUMBER, struct.pack("!HH", CHANNEL, 0)),
                    (XOR_PEER_ADDRESS, xor_address(*callee.getsockname())))
            caller.setblocking(False)
            callee.setblocking(False)
            channel = ChannelSocket(caller, CHANNEL)
            self.allocations.append(caller)
            parties += [(channel, self.server), (callee, relayed)]
        return parties

    def close_parties(self, parties):
        """Deletes the allocations (a refresh to lifetime 0) and closes the sockets."""
        for caller in self.allocations:
            caller.settimeout(TIMEOUT)
            request(caller, self.server, REFRESH, (LIFETIME, struct.pack("!I", 0)))
        self.allocations = []
        for sock, _ in parties:
            sock.close()

    def quit(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.directory.cleanup()
