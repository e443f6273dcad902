"""Message server benchmark: NeoChat against a bare Twisted line router, in
the same run, on the same workloads (seed-000 JSON lines over loopback).

Each server runs as a separate process pinned to one core, the load
generator (this process) to the other.  Workloads:

- ``pairs``: N sender/receiver pairs flat out, each sender keeping a window
  of 100 private messages in flight (it sends one more each time its
  receiver got one): delivered msgs/s, latency p50/p99, server CPU µs per
  message;
- ``steady``: a fixed total rate over N pairs: latency p50/p99/max and the
  rate achieved;
- ``idle``: M clients register and log in, 50 at a time, then stay idle:
  logins/s per thousand, server memory per connection once the server has
  settled (under 5 % of a core; at most 30 s after the last login).

Every NeoChat message is committed (with its pending row) before delivery;
the reference stores nothing.  The last column is NeoChat / reference.

    python bench/bench_chat.py [--pairs 10 100] [--seconds 5] [--rate 2000] [--idle 1000] [--db URL]
"""

import argparse
import json
import os
import resource
import sys
import time
from typing import NamedTuple

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.server import cpu_seconds, neochat, reference  # noqa: E402

WINDOW = 100
LOGINS_IN_FLIGHT = 50
SERVER_CPU, BENCH_CPU = 0, 1


class Client(Protocol):
    def __init__(self):
        self.buffer = b""
        self.waiting = {}  # message_type -> Deferred
        self.on_word = None

    def dataReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message["message_type"] == "word" and self.on_word is not None:
                self.on_word(float(message["content"]))
                continue
            waiter = self.waiting.pop(message["message_type"], None)
            if waiter is not None:
                waiter.callback(message)

    def request(self, obj):
        self.waiting[obj["message_type"]] = d = defer.Deferred()
        self.transport.write(json.dumps(obj).encode() + b"\n")
        return d


async def connect(reactor, port, name, presence="delta"):
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
    reply = await client.request({"message_type": "register", "username": name, "password": "pw"})
    assert reply["content"] == "success", reply
    reply = await client.request({"message_type": "login", "username": name, "password": "pw",
                                  "presence": presence})
    assert reply["content"] == "success", reply
    return client


def word(pair):
    tag, _, n = pair.rpartition("-")
    return json.dumps({"message_type": "word", "chat_type": "private", "send_user": f"{tag}-s{n}",
                       "rece_user": f"{tag}-r{n}", "content": repr(time.perf_counter())}).encode() + b"\n"


class Dialect(NamedTuple):
    """How the workloads speak to a server: ``connect(reactor, port, name)``
    registers and logs in an account and returns a Protocol whose ``on_word``
    is called with each received word's send time; ``word(pair)`` is the bytes
    of one private message from ``<tag>-s<n>`` to ``<tag>-r<n>`` carrying
    ``time.perf_counter()``."""
    connect: object
    word: object


SEED = Dialect(connect, word)


async def log_in_pairs(reactor, dialect, port, pairs, tag):
    """Accounts ``<tag>s<n>`` sending to ``<tag>r<n>``."""
    senders = [await dialect.connect(reactor, port, f"{tag}s{n}") for n in range(pairs)]
    return [(f"{tag}{n}", senders[n], await dialect.connect(reactor, port, f"{tag}r{n}"))
            for n in range(pairs)]


class Meter:
    """Latencies of delivered messages and the server's CPU over a run."""

    def __init__(self, server):
        self.server = server
        self.latencies = []

    def start(self):
        self.started = time.perf_counter()
        self.cpu = cpu_seconds(self.server)

    def stop(self):
        self.elapsed = time.perf_counter() - self.started
        self.cpu = cpu_seconds(self.server) - self.cpu

    def received(self, sent_at):
        self.latencies.append(time.perf_counter() - sent_at)

    def result(self):
        latencies = sorted(self.latencies) or [float("nan")]
        delivered = len(self.latencies)
        return {
            "msgs/s": delivered / self.elapsed,
            "p50 ms": latencies[len(latencies) // 2] * 1000,
            "p99 ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "max ms": latencies[-1] * 1000,
            "CPU µs/msg": self.cpu / max(delivered, 1) * 1e6,
        }


async def flat_out(reactor, dialect, port, server, pairs, seconds):
    """Each sender keeps WINDOW messages in flight."""
    clients = await log_in_pairs(reactor, dialect, port, pairs, f"flat{pairs}-")
    meter = Meter(server)
    deadline = time.perf_counter() + seconds
    for n, sender, receiver in clients:
        def received(sent_at, n=n, sender=sender):
            meter.received(sent_at)
            if time.perf_counter() < deadline:
                sender.transport.write(dialect.word(n))
        receiver.on_word = received
    meter.start()
    for n, sender, _ in clients:
        sender.transport.writeSequence([dialect.word(n) for _ in range(WINDOW)])
    await task.deferLater(reactor, seconds, lambda: None)
    meter.stop()
    result = meter.result()
    await drained(reactor, meter)
    close(c for _, s, r in clients for c in (s, r))
    return result


async def drained(reactor, meter):
    """Wait until the last windows are delivered (at most 60 s)."""
    for _ in range(600):
        before = len(meter.latencies)
        await task.deferLater(reactor, 0.1, lambda: None)
        if len(meter.latencies) == before:
            return


async def steady(reactor, dialect, port, server, pairs, rate, seconds):
    """``rate`` messages per second in all, round robin over the pairs."""
    clients = await log_in_pairs(reactor, dialect, port, pairs, f"steady{rate}-")
    meter = Meter(server)
    for _, _, receiver in clients:
        receiver.on_word = meter.received
    tick = 0.005
    per_tick = rate * tick
    sent = [0.0, 0]

    def send():
        sent[0] += per_tick
        while sent[1] < int(sent[0]):
            n, sender, _ = clients[sent[1] % len(clients)]
            sender.transport.write(dialect.word(n))
            sent[1] += 1

    loop = task.LoopingCall(send)
    loop.clock = reactor
    meter.start()
    loop.start(tick)
    await task.deferLater(reactor, seconds, lambda: None)
    loop.stop()
    meter.stop()
    await drained(reactor, meter)
    close(c for _, s, r in clients for c in (s, r))
    return meter.result()


async def idle_logins(reactor, dialect, port, server, count):
    """Logins/s for each thousand, and memory per logged-in connection."""
    rss_before = server.memory_info().rss
    clients, rates = [], []
    block_start = time.perf_counter()
    for start in range(0, count, LOGINS_IN_FLIGHT):
        batch = range(start, min(count, start + LOGINS_IN_FLIGHT))
        clients += await defer.gatherResults(
            [defer.ensureDeferred(dialect.connect(reactor, port, f"idle{n}")) for n in batch])
        if len(clients) % 1000 == 0 or len(clients) == count:
            now = time.perf_counter()
            rates.append((len(clients), (len(clients) - 1000 * len(rates) if len(clients) % 1000 else 1000)
                          / (now - block_start)))
            block_start = now
    await settled(reactor, server)
    per_conn = (server.memory_info().rss - rss_before) / max(count, 1) / 1024
    close(clients)
    result = {"KB/conn": per_conn}
    for upto, rate in rates:
        result[f"logins/s to {upto}"] = rate
    return result


async def settled(reactor, server, seconds=30):
    """Idle means idle: wait (at most ``seconds``) until the server has
    sent what the last logins caused and uses under 5 % of a core."""
    server.cpu_percent()
    for _ in range(seconds):
        await task.deferLater(reactor, 1, lambda: None)
        if server.cpu_percent() < 5:
            return


def close(clients):
    for client in clients:
        client.transport.loseConnection()


async def run_all(reactor, args, dialect, port, server):
    results = {}
    for pairs in args.pairs:
        results[f"{pairs} pairs flat out"] = await flat_out(reactor, dialect, port, server, pairs, args.seconds)
    if args.rate:
        results[f"steady {args.rate} msgs/s, {args.steady_pairs} pairs"] = await steady(
            reactor, dialect, port, server, args.steady_pairs, args.rate, args.seconds)
    if args.idle:
        results[f"{args.idle} idle logins"] = await idle_logins(reactor, dialect, port, server, args.idle)
    return results


def measure(serve, dialect, args):
    """The workloads of ``args`` against the server that ``serve()`` starts (a
    context manager yielding its port and psutil.Process), spoken in
    ``dialect``: {workload: {metric: value}}.  The load generator is a child
    process (task.react stops the reactor for good) pinned to BENCH_CPU."""
    import multiprocessing

    def child(queue):
        pin_load_generator()
        holder = {}

        async def go(reactor):
            with serve() as (port, server):
                holder["results"] = await run_all(reactor, args, dialect, port, server)

        try:
            task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
        except SystemExit:
            pass
        queue.put(holder.get("results", {}))

    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=child, args=(queue,))
    process.start()
    results = queue.get()
    process.join()
    return results


def pin_load_generator():
    """This process (the load generator) on BENCH_CPU, with the descriptor
    limit raised to the hard limit for it and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import psutil

        psutil.Process().cpu_affinity([BENCH_CPU])
    except (AttributeError, OSError, ValueError):
        pass


def table(neo, ref, db):
    lines = [f"| workload | metric | NeoChat ({db}) | reference | ratio |", "|---|---|---|---|---|"]
    for workload, metrics in neo.items():
        for metric, value in metrics.items():
            other = ref.get(workload, {}).get(metric)
            ratio = f"{value / other:.2f}" if other else "—"
            other_text = f"{other:.1f}" if other is not None else "—"
            lines.append(f"| {workload} | {metric} | {value:.1f} | {other_text} | {ratio} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="*", default=[10, 100])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=int, default=2000, help="steady total rate (0: skip)")
    parser.add_argument("--steady-pairs", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000, help="idle logins (0: skip)")
    parser.add_argument("--db", default="", help="NeoChat's database URL (default: a fresh SQLite file)")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()

    servers = {"neochat": lambda: neochat(*(["--db", args.db] if args.db else []), cpu=SERVER_CPU)}
    if not args.no_reference:
        servers["reference"] = lambda: reference(cpu=SERVER_CPU)
    results = {kind: measure(serve, SEED, args) for kind, serve in servers.items()}
    db = "MariaDB" if args.db.startswith(("mysql", "mariadb")) else "SQLite"
    print(table(results["neochat"], results.get("reference", {}), db))


if __name__ == "__main__":
    main()
