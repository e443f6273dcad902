"""Memory per idle logged-in client and login rates, by password and by
resume token, at two argon2 settings.  A script, not a test.

    python bench/bench_logins.py [--clients 300]

The server runs in its own process (bench/server.py).  Clients register from
many loopback addresses (127.0.x.y) so the per-address registration limit
does not apply, log in asking for a resume token, stay connected idle (RSS
is read then), reconnect with the token.  Logins run one after the other.
"""

import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.server import neochat  # noqa: E402

SETTINGS = ((2, 19456), (3, 65536))  # (argon2 time cost, memory KiB): the default, the old default


def connect(port, i):
    s = socket.socket()
    s.bind((f"127.0.{1 + i // 250}.{2 + i % 250}", 0))
    s.connect(("127.0.0.1", port))
    return s


def request(s, obj, kind):
    s.sendall(json.dumps(obj).encode() + b"\n")
    buf = b""
    while True:
        buf += s.recv(65536)
        for line in buf.split(b"\n")[:-1]:
            m = json.loads(line)
            if m.get("message_type") == kind:
                return m


def run(t, m, N):
    """One server with these argon2 settings; prints its numbers."""
    with neochat("--argon2-time-cost", str(t), "--argon2-memory", str(m)) as (port, proc):
        time.sleep(1)
        base = proc.memory_info().rss
        socks, tokens = [], []
        started = time.monotonic()
        for i in range(N):
            s = connect(port, i)
            assert request(s, {"message_type": "register", "username": f"u{i}", "password": "pw"}, "register")["content"] == "success"
            r = request(s, {"message_type": "login", "username": f"u{i}", "password": "pw", "resume": True}, "login")
            assert r["content"] == "success", r
            tokens.append(r["token"]); socks.append(s)
        pw_time = time.monotonic() - started
        time.sleep(2)
        after = proc.memory_info().rss
        for s in socks: s.close()
        time.sleep(1)
        socks = []
        started = time.monotonic()
        for i in range(N):
            s = connect(port, i)
            r = request(s, {"message_type": "login", "username": f"u{i}", "token": tokens[i]}, "login")
            assert r["content"] == "success", r
            socks.append(s)
        tok_time = time.monotonic() - started
        print(f"argon2 t={t} m={m}KiB: RSS base {base/2**20:.1f} MiB, with {N} logged in {after/2**20:.1f} MiB "
              f"-> {(after-base)/N/1024:.1f} KB/conn; register+password login {N/pw_time:.0f}/s sequential; "
              f"token login {N/tok_time:.0f}/s sequential", flush=True)
        for s in socks: s.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300)
    clients = parser.parse_args().clients
    for t, m in SETTINGS:
        run(t, m, clients)


if __name__ == "__main__":
    main()
