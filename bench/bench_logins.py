"""Memory per idle logged-in client and login rates, by password and by
resume token, at two argon2 settings.  A script, not a test.

    python bench/bench_logins.py [--clients 300] [--settings 2:19456 3:65536] [--rounds 3] [--db URL]

The server runs in its own process (bench/server.py).  Clients register from
many loopback addresses (127.0.x.y) so the per-address registration limit
does not apply, then all log in at once asking for a resume token (those told
"server busy, retry" send again), stay connected idle (RSS is read then), and
all reconnect at once with their tokens (a reconnect storm after a restart),
``--rounds`` times: the median rate, and the server's CPU time per token
login (what the rate would be on a core of its own).
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.server import cpu_seconds, neochat  # noqa: E402

SETTINGS = ((2, 19456), (3, 65536))  # (argon2 time cost, memory KiB): the default, the old default


def connect(port, number):
    """A client socket from its own loopback address."""
    client = socket.socket()
    client.bind((f"127.0.{1 + number // 250}.{2 + number % 250}", 0))
    client.connect(("127.0.0.1", port))
    return client


def send(client, message):
    client.sendall(json.dumps(message).encode() + b"\n")


def receive(client, message_type):
    """The first message of ``message_type`` on the connection (the rest is dropped)."""
    data = b""
    while True:
        chunk = client.recv(65536)
        assert chunk, "server closed the connection"
        data += chunk
        for line in data.split(b"\n")[:-1]:
            message = json.loads(line)
            if message.get("message_type") == message_type:
                return message


def storm(port, logins):
    """Connect everyone, send every login at once, wait for every reply, and
    send again those answered "server busy, retry": (logins per second, the
    replies, the clients)."""
    clients = [connect(port, number) for number in range(len(logins))]
    replies = [None] * len(logins)
    waiting = list(range(len(logins)))
    started = time.monotonic()
    while waiting:
        for number in waiting:
            send(clients[number], logins[number])
        for number in waiting:
            replies[number] = receive(clients[number], "login")
        waiting = [number for number in waiting if replies[number].get("reason") == "server busy, retry"]
    rate = len(logins) / (time.monotonic() - started)
    failed = [reply for reply in replies if reply["content"] != "success"]
    assert not failed, failed[:3]
    return rate, replies, clients


def run(time_cost, memory, count, rounds, db):
    """One server with these argon2 settings; prints its numbers."""
    names = [f"u{uuid.uuid4().hex[:8]}-{number}" for number in range(count)]  # new ones in a reused database
    options = ["--argon2-time-cost", str(time_cost), "--argon2-memory", str(memory),
               "--limit", "login_timeout=0",  # a slow hash makes the last of the storm wait long
               *(["--db", db] if db else [])]
    with neochat(*options) as (port, process):
        time.sleep(1)
        base = process.memory_info().rss
        for number, name in enumerate(names):
            with connect(port, number) as client:
                send(client, {"message_type": "register", "username": name, "password": "pw"})
                assert receive(client, "register")["content"] == "success"
        by_password, replies, clients = storm(port, [
            {"message_type": "login", "username": name, "password": "pw", "resume": True} for name in names
        ])
        time.sleep(2)
        idle = process.memory_info().rss
        rates, cpu = [], []
        for _ in range(rounds):
            for client in clients:
                client.close()
            time.sleep(2)  # every logout done
            before = cpu_seconds(process)
            rate, replies, clients = storm(port, [
                {"message_type": "login", "username": name, "token": reply["token"]}
                for name, reply in zip(names, replies)
            ])
            time.sleep(1)  # the replays and presence that follow the replies
            cpu.append((cpu_seconds(process) - before) / count)
            rates.append(rate)
        for client in clients:
            client.close()
        by_token = statistics.median(rates)
        print(f"argon2 t={time_cost} m={memory} KiB: RSS {base / 2**20:.1f} MiB, {idle / 2**20:.1f} MiB with "
              f"{count} idle logged-in clients: {(idle - base) / count / 1024:.1f} KB/client; "
              f"login storm by password {by_password:.0f}/s, by token {by_token:.0f}/s "
              f"({by_token / by_password:.1f}x; rounds {', '.join(f'{rate:.0f}' for rate in rates)}), "
              f"server CPU per token login {statistics.median(cpu) * 1e6:.0f} µs "
              f"({1 / statistics.median(cpu):.0f}/s on a core of its own)", flush=True)


def setting(text):
    time_cost, memory = text.split(":")
    return int(time_cost), int(memory)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--settings", type=setting, nargs="+", default=SETTINGS, metavar="TIME:KIB",
                        help="argon2 time cost and memory, one server each (default: the default and the old one)")
    parser.add_argument("--rounds", type=int, default=3, help="token storms per server")
    parser.add_argument("--db", default="", help="the database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    for time_cost, memory in args.settings:
        run(time_cost, memory, args.clients, args.rounds, args.db)


if __name__ == "__main__":
    main()
