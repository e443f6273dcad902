"""Load test of the cell server's relay mode on loopback.  A script, not a test.

    python bench/bench_cell.py [--seconds 3] [--max-calls 1600]

The relay runs in a subprocess (this file with --serve: a CellService in relay
mode on 127.0.0.1), so psutil can measure its CPU and memory alone; it takes
one-line commands on stdin.  This process is the load generator: for each step
it opens S accepted voice calls, latches both parties (one datagram each, as a
NAT'd client would), then each party sends 160-byte datagrams at 50/s for a few
seconds, staggered over the 20 ms period.  Every datagram carries its send time,
so latency is one-way through the relay (loopback alone adds a few microseconds).
A step is held when loss < 1%, p99 latency < 20 ms and the generator kept the
offered rate.  The run stops at the first step not held.  Then one call is sent
flat out.  The relay's rate caps are lifted so the flat-out figure measures the
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
LOCAL = "127.0.0.1"
STEPS = (10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600)
RATE = 50  # datagrams per second per party
SIZE = 160
SLOTS = 20  # the 20 ms period is split into 1 ms send slots
DRAIN = 0.5  # seconds to wait for stragglers after a step
FLAT_OUT_SECONDS = 2.0
MAX_LOSS = 0.01
MAX_P99 = 0.020


def serve():
    sys.path.insert(0, REPO)
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from neochat.chat.calls import CallLimits, CallRegistry, MediaCaps
    from neochat.services.cell import CellService

    uncapped = MediaCaps(max_datagram=1400, packets_per_second=1e9, bytes_per_second=1e12)
    registry = CallRegistry(CallLimits(max_calls_total=100_000, audio=uncapped), reactor)
    cell = CellService(registry, interface=LOCAL, port=0, relay_ports=(0, 0),
                       client_ports=(20000, 29999), reactor=reactor)

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self):
            self.opened = 0
            self.reply("ready")

        def reply(self, value):
            self.sendLine(json.dumps(value).encode())

        def lineReceived(self, line):
            command, _, argument = line.decode().partition(" ")
            if command == "open":
                self.reply([self.open_call() for _ in range(int(argument))])
            elif command == "counters":
                self.reply(cell.counters())
            elif command == "close":
                registry.close_all("closed")
                cell.wait_ports_closed().addCallback(lambda _: self.reply("closed"))
            elif command == "quit":
                cell.stopService().addCallback(lambda _: reactor.stop())

        def open_call(self):
            self.opened += 1
            call = cell.start_voice_call(f"a{self.opened}", f"b{self.opened}", LOCAL, LOCAL)
            registry.accept(call.key, call.callee)
            return [call.caller_leg.relay_port, call.callee_leg.relay_port]

    cell.startService()
    stdio.StandardIO(Control())
    reactor.run()


class Relay:
    """The relay subprocess and its command line.  What run_step needs of a
    relay: open_parties, close_parties, stats (a psutil.Process) and rss_mb;
    bench/turn.py has coturn's."""

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=REPO)
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
        self.stats = psutil.Process(self.process.pid)
        assert self.read() == "ready"

    def read(self):
        return json.loads(self.process.stdout.readline())

    def ask(self, command):
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self.read()

    def rss_mb(self):
        return self.stats.memory_info().rss / 2**20

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
            "relay_cpu": relay_cpu, "relay_rss_mb": rss, "generator_cpu": generator_cpu,
            "held": loss < MAX_LOSS and p99 < MAX_P99 and sent >= 0.99 * offered}


def run_flat_out(relay):
    """One call, the caller sending as fast as it can; returns datagrams/s delivered and relay CPU."""
    (caller, caller_relay), (callee, _) = relay.open_parties(1)
    callee.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    payload = bytearray(SIZE)
    received = 0
    relay.stats.cpu_percent(None)
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
    relay_cpu = relay.stats.cpu_percent(None)
    relay.close_parties([(caller, None), (callee, None)])
    return received / FLAT_OUT_SECONDS, relay_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="run the relay (used by the bench itself)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each step")
    parser.add_argument("--max-calls", type=int, default=STEPS[-1], help="largest step")
    options = parser.parse_args()
    if options.serve:
        return serve()
    relay = Relay()
    print(f"relay pid {relay.process.pid}, idle rss {relay.rss_mb():.1f} MB; "
          f"each party sends {RATE}/s x {SIZE} B; a step lasts {options.seconds:g} s")
    print(f"{'calls':>6} {'pkt/s in':>9} {'loss':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'relay cpu':>9} {'relay rss':>9} {'gen cpu':>7}  held")
    best = 0
    try:
        for calls in (step for step in STEPS if step <= options.max_calls):
            result = run_step(relay, calls, options.seconds)
            print(f"{calls:>6} {result['sent'] / options.seconds:>9.0f} {result['loss']:>7.2%} "
                  f"{result['p50'] * 1e3:>7.2f} {result['p99'] * 1e3:>7.2f} {result['relay_cpu']:>8.0f}% "
                  f"{result['relay_rss_mb']:>6.1f} MB {result['generator_cpu']:>6.0f}%  "
                  f"{'yes' if result['held'] else 'NO'}", flush=True)
            if not result["held"]:
                break
            best = calls
        rate, cpu = run_flat_out(relay)
        counters = relay.ask("counters")
    finally:
        relay.quit()
    print(f"largest S held (loss < {MAX_LOSS:.0%}, p99 < {MAX_P99 * 1e3:.0f} ms): {best} calls "
          f"= {best * 2 * RATE} datagrams/s relayed")
    print(f"one call flat out: {rate:.0f} datagrams/s delivered, relay cpu {cpu:.0f}%")
    drops = {name: value for name, value in counters.items() if name.startswith("dropped_") and value}
    print(f"relay totals: {counters['relayed_packets']} packets, {counters['relayed_bytes']} bytes; drops {drops}")


if __name__ == "__main__":
    main()
