"""The private-message workload of bench_chat.py (``pairs`` flat out)
against one node, one node with --cluster, and two nodes sharing one
MariaDB database and one Redis, each sender on the first node and its
receiver on the second (every message crosses Redis).

Every node is pinned to the same core, so the two-node run shows what a
cluster costs per message (CPU µs/msg), not what a second machine adds.

    python bench/bench_cluster.py --db mysql://USER:PW@127.0.0.1:3306/DB [--redis redis://127.0.0.1:6379/9]
        [--pairs 10 50] [--seconds 5]
"""

import argparse
import contextlib
import multiprocessing
import uuid
from collections import namedtuple

from twisted.internet import defer, task

import bench_chat  # bench/bench_chat.py
from server import neochat  # bench/server.py

Times = namedtuple("Times", "user system")


class Nodes:
    """The nodes' processes as one for bench_chat's Meter."""

    def __init__(self, processes):
        self.processes = processes

    def cpu_times(self):
        times = [process.cpu_times() for process in self.processes]
        return Times(sum(t.user for t in times), sum(t.system for t in times))


async def log_in_across(reactor, ports, pairs, tag):
    """bench_chat.log_in_pairs, senders on the first node, receivers on the last."""
    senders = [await bench_chat.connect(reactor, ports[0], f"{tag}s{n}") for n in range(pairs)]
    return [(f"{tag}{n}", senders[n], await bench_chat.connect(reactor, ports[-1], f"{tag}r{n}"))
            for n in range(pairs)]


def results(args, nodes, cluster):
    """{pairs: flat-out results} with ``nodes`` nodes (in its own process:
    task.react stops the reactor for good)."""
    run_id = uuid.uuid4().hex[:8]
    holder = {}

    async def go(reactor):
        with contextlib.ExitStack() as stack:
            started = [stack.enter_context(neochat(
                "--db", args.db, *(["--cluster", args.redis, "--node-id", f"bench-{run_id}-{n}"] if cluster else []),
                cpu=bench_chat.SERVER_CPU)) for n in range(nodes)]
            ports = [port for port, _ in started]
            bench_chat.log_in_pairs = lambda reactor, _dialect, _port, pairs, tag: log_in_across(
                reactor, ports, pairs, f"{run_id}{tag}")
            server = Nodes([process for _, process in started])
            for pairs in args.pairs:
                holder[pairs] = await bench_chat.flat_out(reactor, bench_chat.SEED, None, server, pairs, args.seconds)

    try:
        task.react(lambda reactor: defer.ensureDeferred(go(reactor)))
    except SystemExit:
        pass
    return holder


def child(args, nodes, cluster, queue):
    queue.put(results(args, nodes, cluster))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a MariaDB URL: every node shares it")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--pairs", type=int, nargs="*", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    runs = {"1 node": (1, False), "1 node, --cluster": (1, True), "2 nodes, across": (2, True)}
    measured = {}
    for name, (nodes, cluster) in runs.items():
        queue = multiprocessing.Queue()
        process = multiprocessing.Process(target=child, args=(args, nodes, cluster, queue))
        process.start()
        measured[name] = queue.get()
        process.join()
    metrics = ["msgs/s", "p50 ms", "p99 ms", "CPU µs/msg"]
    print("| pairs | run | " + " | ".join(metrics) + " | msgs/s vs 1 node |")
    print("|---|---|" + "---|" * (len(metrics) + 1))
    for pairs in args.pairs:
        base = measured["1 node"][pairs]["msgs/s"]
        for name in runs:
            row = measured[name][pairs]
            print(f"| {pairs} | {name} | " + " | ".join(f"{row[m]:.1f}" for m in metrics)
                  + f" | {row['msgs/s'] / base:.2f} |")


if __name__ == "__main__":
    main()
