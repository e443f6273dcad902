"""Load test of the cell server's relay mode on loopback.  A script, not a test.

    python bench/bench_cell.py [--seconds 3] [--max-calls 1600] [--steps 10,100,700]

Two relays run, each in a subprocess (this file with --serve KIND), so psutil
can measure each one's CPU and memory alone: NeoChat's (a CellService in relay
mode on 127.0.0.1) and, as the reference, a bare Twisted relay
(bench/reference_relay.py).  Each takes one-line commands on stdin.  This process is the load generator: for each step
it opens S accepted voice calls, latches both parties (one datagram each, as a
NAT'd client would), then each party sends 160-byte datagrams at 50/s for a few
seconds, staggered over the 20 ms period.  Every datagram carries its send time,
so latency is one-way through the relay (loopback alone adds a few microseconds).
A step is held when loss < 1%, p99 latency < 20 ms and the generator kept the
offered rate.  Relay CPU per datagram relayed (psutil's CPU times) is printed
too: unlike rates, it means something on a machine busy with other work.  The
relays take turns step by step; a relay stops at its first step not held
(with --keep-going, it runs them all).  Then one call is sent flat out through
each.  NeoChat's rate caps are lifted so the flat-out figure measures the
relay, not the cap.
"""

import argparse
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.server import cpu_seconds  # noqa: E402
LOCAL = "127.0.0.1"
STEPS = (10, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1600)
KINDS = ("neochat", "bare")
RATE = 50  # datagrams per second per party
SIZE = 160
SLOTS = 20  # the 20 ms period is split into 1 ms send slots
DRAIN = 0.5  # seconds to wait for stragglers after a step
FLAT_OUT_SECONDS = 2.0
MAX_LOSS = 0.01
MAX_P99 = 0.020


class NeoChatRelay:
    """The cell service in relay mode, its rate caps lifted."""

    def __init__(self, reactor):
        from neochat.chat.calls import CallLimits, CallRegistry, MediaCaps
        from neochat.services.cell import CellService

        uncapped = MediaCaps(max_datagram=1400, packets_per_second=1e9, bytes_per_second=1e12)
        self.registry = CallRegistry(CallLimits(max_calls_total=100_000, audio=uncapped), reactor)
        self.cell = CellService(self.registry, interface=LOCAL, port=0, relay_ports=(0, 0),
                                client_ports=(20000, 29999), reactor=reactor)
        self.cell.startService()
        self.opened = 0

    def open_call(self):
        self.opened += 1
        call = self.cell.start_voice_call(f"a{self.opened}", f"b{self.opened}", LOCAL, LOCAL)
        self.registry.accept(call.key, call.callee)
        return [call.caller_leg.relay_port, call.callee_leg.relay_port]

    def counters(self):
        return dict(self.cell.counters(), buffers=self.cell.buffer_sizes())

    def close_all(self):
        self.registry.close_all("closed")
        return self.cell.wait_ports_closed()

    def stop(self):
        return self.cell.stopService()


def serve(kind):
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    if kind == "bare":
        from bench.reference_relay import BareRelay

        relay = BareRelay(reactor, LOCAL)
    else:
        relay = NeoChatRelay(reactor)

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self):
            self.reply("ready")

        def reply(self, value):
            self.sendLine(json.dumps(value).encode())

        def lineReceived(self, line):
            command, _, argument = line.decode().partition(" ")
            if command == "open":
                self.reply([relay.open_call() for _ in range(int(argument))])
            elif command == "counters":
                self.reply(relay.counters())
            elif command == "close":
                relay.close_all().addCallback(lambda _: self.reply("closed"))
            elif command == "quit":
                relay.stop().addCallback(lambda _: reactor.stop())

    stdio.StandardIO(Control())
    reactor.run()


class Measured:
    """CPU and memory of a relay process, ``stats`` (a psutil.Process)."""

    def cpu_seconds(self):
        return cpu_seconds(self.stats)

    def rss_mb(self):
        return self.stats.memory_info().rss / 2**20


class Relay(Measured):
    """The relay subprocess and its command line.  What run_step needs of a
    relay: open_parties, close_parties and Measured's; bench/turn.py has
    coturn's."""

    def __init__(self, kind):
        env = dict(os.environ, PYTHONPATH=REPO)
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
        self.stats = psutil.Process(self.process.pid)
        assert self.read() == "ready"

    def read(self):
        return json.loads(self.process.stdout.readline())

    def ask(self, command):
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self.read()

    def open_parties(self, calls):
        return open_parties(self, calls)

    def close_parties(self, parties):
        close_parties(self, parties)

    def quit(self):
        self.process.stdin.write(b"quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=10)


def open_parties(relay, calls):
    """Sockets for both parties of ``calls`` new calls, latched: [(socket, relay address)]."""
    parties = []
    for caller_port, callee_port in relay.ask(f"open {calls}"):
        for relay_port in (caller_port, callee_port):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOCAL, 0))
            sock.setblocking(False)
            parties.append((sock, (LOCAL, relay_port)))
    for sock, address in parties:
        sock.sendto(b"latch", address)
    time.sleep(0.3)
    for sock, _ in parties:
        drain(sock)
    return parties


def drain(sock, latencies=None):
    count = 0
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1
        if latencies is not None:
            latencies.append(time.perf_counter_ns() - struct.unpack_from("!q", data)[0])


def close_parties(relay, parties):
    for sock, _ in parties:
        sock.close()
    assert relay.ask("close") == "closed"


def run_step(relay, calls, seconds):
    parties = relay.open_parties(calls)
    selector = selectors.DefaultSelector()
    for sock, _ in parties:
        selector.register(sock, selectors.EVENT_READ)
    slots = [parties[slot::SLOTS] for slot in range(SLOTS)]
    payload = bytearray(SIZE)
    latencies = []
    sent = 0
    relay.stats.cpu_percent(None)
    relay_cpu_seconds = relay.cpu_seconds()
    generator_cpu = time.process_time()
    start = next_tick = time.perf_counter()
    end = start + seconds
    slot = 0
    while True:
        now = time.perf_counter()
        while next_tick <= now and next_tick < end:
            for sock, address in slots[slot]:
                struct.pack_into("!q", payload, 0, time.perf_counter_ns())
                try:
                    sock.sendto(payload, address)
                    sent += 1
                except BlockingIOError:
                    pass
            slot = (slot + 1) % SLOTS
            next_tick += 1 / (RATE * SLOTS)
        if now >= end + DRAIN:
            break
        for key, _ in selector.select(max(0.0, min(next_tick, end + DRAIN) - now)):
            drain(key.fileobj, latencies)
    relay_cpu = relay.stats.cpu_percent(None)
    relay_cpu_seconds = relay.cpu_seconds() - relay_cpu_seconds
    generator_cpu = 100 * (time.process_time() - generator_cpu) / (time.perf_counter() - start)
    rss = relay.rss_mb()
    selector.close()
    relay.close_parties(parties)
    offered = len(parties) * RATE * seconds
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] / 1e9 if latencies else float("inf")
    loss = 1 - len(latencies) / sent if sent else 1.0
    return {"calls": calls, "sent": sent, "offered": offered, "received": len(latencies), "loss": loss,
            "p50": latencies[len(latencies) // 2] / 1e9 if latencies else float("inf"), "p99": p99,
            "relay_cpu": relay_cpu, "us_per_datagram": 1e6 * relay_cpu_seconds / max(len(latencies), 1),
            "relay_rss_mb": rss, "generator_cpu": generator_cpu,
            "held": loss < MAX_LOSS and p99 < MAX_P99 and sent >= 0.99 * offered}


def run_flat_out(relay):
    """One call, the caller sending as fast as it can; returns datagrams/s delivered and relay CPU."""
    (caller, caller_relay), (callee, _) = relay.open_parties(1)
    callee.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    payload = bytearray(SIZE)
    received = 0
    relay_cpu_seconds = relay.cpu_seconds()
    start = time.perf_counter()
    while time.perf_counter() - start < FLAT_OUT_SECONDS:
        for _ in range(32):
            try:
                caller.sendto(payload, caller_relay)
            except BlockingIOError:
                break
        received += drain(callee)
    time.sleep(0.1)
    received += drain(callee)
    relay_cpu_seconds = relay.cpu_seconds() - relay_cpu_seconds
    relay.close_parties([(caller, None), (callee, None)])
    return received / FLAT_OUT_SECONDS, 1e6 * relay_cpu_seconds / max(received, 1)


def print_step(kind, result, seconds):
    print(f"{kind:8} {result['calls']:>6} {result['sent'] / seconds:>9.0f} {result['loss']:>7.2%} "
          f"{result['p50'] * 1e3:>7.2f} {result['p99'] * 1e3:>7.2f} {result['relay_cpu']:>8.0f}% {result['us_per_datagram']:>7.1f} "
          f"{result['relay_rss_mb']:>6.1f} MB {result['generator_cpu']:>6.0f}%  "
          f"{'yes' if result['held'] else 'NO'}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=KINDS, help="run a relay (used by the bench itself)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each step")
    parser.add_argument("--max-calls", type=int, default=STEPS[-1], help="largest step")
    parser.add_argument("--steps", type=lambda text: [int(n) for n in text.split(",")], default=STEPS,
                        help="comma-separated numbers of calls (default: %(default)s)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every step, even after one was not held (on a busy machine)")
    options = parser.parse_args()
    if options.serve:
        return serve(options.serve)
    relays = {kind: Relay(kind) for kind in KINDS}
    print(f"each party sends {RATE}/s x {SIZE} B; a step lasts {options.seconds:g} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'relay':8} {'calls':>6} {'pkt/s in':>9} {'loss':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'relay cpu':>9} {'µs/dgram':>8} {'relay rss':>9} {'gen cpu':>7}  held")
    best = dict.fromkeys(KINDS, 0)
    holding = set(KINDS)
    flat_out, counters = {}, {}
    try:
        for calls in (step for step in options.steps if step <= options.max_calls):
            for kind in KINDS:  # in turns, so that a busy spell of the machine hits both
                if kind in holding:
                    result = run_step(relays[kind], calls, options.seconds)
                    print_step(kind, result, options.seconds)
                    if result["held"]:
                        best[kind] = max(best[kind], calls)
                    elif not options.keep_going:
                        holding.discard(kind)
            if not holding:
                break
        for kind in KINDS:
            flat_out[kind] = run_flat_out(relays[kind])
            counters[kind] = relays[kind].ask("counters")
    finally:
        for relay in relays.values():
            relay.quit()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"largest S held (loss < {MAX_LOSS:.0%}, p99 < {MAX_P99 * 1e3:.0f} ms): NeoChat {best['neochat']} calls, "
          f"bare {best['bare']} calls (ratio {best['neochat'] / max(best['bare'], 1):.2f})")
    (rate, cpu), (bare_rate, bare_cpu) = flat_out["neochat"], flat_out["bare"]
    print(f"one call flat out: NeoChat {rate:.0f} datagrams/s ({cpu:.1f} µs of relay CPU each), "
          f"bare {bare_rate:.0f}/s ({bare_cpu:.1f} µs each), ratio {rate / bare_rate:.2f} "
          f"(CPU per datagram {bare_cpu / cpu:.2f})")
    neochat = counters["neochat"]
    drops = {name: value for name, value in neochat.items() if name.startswith("dropped_") and value}
    print(f"NeoChat relay totals: {neochat['relayed_packets']} packets; drops {drops}; "
          f"socket buffers {neochat['buffers']}")


if __name__ == "__main__":
    main()
