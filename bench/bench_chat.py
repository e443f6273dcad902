"""Message server benchmark: private-message throughput, latency, memory.

Starts `twistd -n neochat` as a separate process on loopback, logs in N
sender/receiver pairs over the JSON dialect, and has each sender send its
next message as soon as its receiver got the previous one (closed loop), for
a fixed time.  Then it logs in M idle connections and reports how much the
server's resident memory grew per connection.

    python bench/bench_chat.py [--pairs 50] [--seconds 10] [--idle 1000] [--db URL]
"""

import argparse
import json
import time

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from server import neochat  # bench/server.py


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
            kind = message["message_type"]
            if kind == "word" and self.on_word:
                self.on_word(message)
            elif kind in self.waiting:
                self.waiting.pop(kind).callback(message)

    def request(self, obj):
        self.waiting[obj["message_type"]] = d = defer.Deferred()
        self.transport.write(json.dumps(obj).encode() + b"\n")
        return d


async def connect(reactor, port, name):
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
    await client.request({"message_type": "register", "username": name, "password": "pw"})
    reply = await client.request({"message_type": "login", "username": name, "password": "pw"})
    assert reply["content"] == "success", reply
    return client


async def measure(reactor, args, port, server):
    pairs = []
    for n in range(args.pairs):
        sender = await connect(reactor, port, f"s{n}")
        receiver = await connect(reactor, port, f"r{n}")
        pairs.append((n, sender, receiver))
    latencies = []
    deadline = time.perf_counter() + args.seconds
    finished = []

    def run_pair(n, sender, receiver):
        done = defer.Deferred()
        finished.append(done)

        def send():
            if time.perf_counter() >= deadline:
                done.callback(None)
                return
            sender.transport.write(json.dumps({
                "message_type": "word", "chat_type": "private", "send_user": f"s{n}",
                "rece_user": f"r{n}", "content": repr(time.perf_counter())}).encode() + b"\n")

        def received(message):
            latencies.append(time.perf_counter() - float(message["content"]))
            send()

        receiver.on_word = received
        send()

    started = time.perf_counter()
    cpu_before = server.cpu_times()
    for pair in pairs:
        run_pair(*pair)
    await defer.DeferredList(finished)
    elapsed = time.perf_counter() - started
    cpu = server.cpu_times()
    cpu_used = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
    latencies.sort()

    rss_before = server.memory_info().rss
    idle = []
    for n in range(args.idle):
        idle.append(await connect(reactor, port, f"idle{n}"))
    await task.deferLater(reactor, 1, lambda: None)
    rss_after = server.memory_info().rss

    print(f"database                 {args.db or 'sqlite (embedded default)'}")
    print(f"pairs                    {args.pairs}")
    print(f"delivered messages       {len(latencies)} in {elapsed:.1f} s")
    print(f"throughput               {len(latencies) / elapsed:.0f} private messages/s")
    print(f"latency p50              {latencies[len(latencies) // 2] * 1000:.2f} ms")
    print(f"latency p99              {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms")
    print(f"server CPU               {cpu_used / elapsed * 100:.0f}% of one core")
    print(f"idle logged-in clients   {args.idle}")
    print(f"server memory per idle   {(rss_after - rss_before) / max(args.idle, 1) / 1024:.1f} KiB")
    print(f"server RSS               {rss_after / 2**20:.1f} MiB")
    for client in idle + [c for _, s, r in pairs for c in (s, r)]:
        client.transport.loseConnection()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    with neochat(*(["--db", args.db] if args.db else [])) as (port, server):
        task.react(lambda reactor: defer.ensureDeferred(measure(reactor, args, port, server)))

if __name__ == "__main__":
    main()
