"""Upload and download throughput of the NeoChat FTP service against a bare
pyftpdlib server, on loopback.  A script, not a test.

    python bench/bench_ftp.py [--mib 64] [--rounds 3] [--small 200] [--clients 20] [--db URL]

Each server runs in a subprocess (this file with --serve neochat|bare DIR):
NeoChat's FTPService inside a reactor, with its database (SQLite in DIR
unless --db), accounts, quota, sha256 and fsync; the bare one is pyftpdlib's
FTPServer with a DummyAuthorizer, writing straight to disk.  This process is
the ftplib client.  Three workloads, the servers taking turns, the
best of ``--rounds`` rounds counting:

- big: one client uploads then downloads one file of ``--mib`` MiB (MiB/s);
- small: one client uploads ``--small`` files of 4 KiB one after the other
  on one connection (files/s);
- concurrent: ``--clients`` clients at once, each uploading 10 files of
  256 KiB on its own connection (files/s and MiB/s in all).

Prints each rate, NeoChat's ratio to the bare server and the load average
(the machine may be shared: only ratios within one run mean much).
"""

import argparse
import ftplib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD = "bench", "bench-password"
BLOCK = 256 * 1024
TIMEOUT = 120  # seconds, per FTP operation
SMALL_FILE = 4 * 1024
CONCURRENT_FILES = 10  # per client
CONCURRENT_FILE = 256 * 1024


def serve_neochat(directory, db_url):
    sys.path.insert(0, REPO)
    from argon2 import PasswordHasher
    from twisted.internet import defer, reactor, stdio
    from twisted.protocols.basic import LineReceiver

    from neochat.chat.accounts import Accounts
    from neochat.chat.files import FileLibrary
    from neochat.services.ftp import FTPService, FtpSettings
    from neochat.store import Database, dialect_from_url
    from neochat.store.files import FileStore
    from neochat.store.schema import upgrade
    from neochat.store.users import UserStore

    db = Database(dialect_from_url(db_url, directory), reactor)
    settings = FtpSettings(interface="127.0.0.1", port=0, max_file_size=0, user_quota=0)
    library = FileLibrary(FileStore(db), directory / "files", settings.file_limits(), reactor)
    accounts = Accounts(UserStore(db), PasswordHasher(time_cost=1, memory_cost=1024), reactor)
    ftp = FTPService(library, accounts, settings, reactor)

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionLost(self, reason):
            stop()

    @defer.inlineCallbacks
    def start():
        yield upgrade(db)
        yield accounts.register(USER, PASSWORD)
        ftp.startService()
        stdio.StandardIO(Control()).write(f"{ftp.address[1]}\n".encode())

    @defer.inlineCallbacks
    def stop():
        yield ftp.stopService()
        db.close()
        reactor.stop()

    reactor.callWhenRunning(start)
    reactor.run()


def serve_bare(directory):
    import logging
    import threading

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(directory), perm="elradfmw")
    handler = type("BareHandler", (FTPHandler,), {"authorizer": authorizer})
    server = FTPServer(("127.0.0.1", 0), handler)
    serve = dict(timeout=0.1, handle_exit=False)
    threading.Thread(target=server.serve_forever, kwargs=serve, daemon=True).start()
    print(server.address[1], flush=True)
    sys.stdin.read()  # until the client closes our stdin
    server.close_all()


class Server:
    """One server subprocess; ``port`` is where it listens."""

    def __init__(self, kind, directory, db_url):
        command = [sys.executable, os.path.abspath(__file__), "--serve", kind, str(directory)]
        if db_url:
            command += ["--db", db_url]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def connect(port):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=TIMEOUT)
    ftp.login(USER, PASSWORD)
    return ftp


def upload(ftp, name, payload):
    """The stored name (NeoChat's reply names it)."""
    reply = ftp.storbinary(f"STOR {name}", io.BytesIO(payload), blocksize=BLOCK)
    if not reply.startswith("226"):
        raise SystemExit(f"upload of {name} failed: {reply}")
    return reply.split("file: ")[1] if "file: " in reply else name


def big_round(port, payload):
    """(upload MiB/s, download MiB/s) for ``payload``, checked."""
    mib = len(payload) / 2**20
    with connect(port) as ftp:
        started = time.perf_counter()
        name = upload(ftp, "bench.bin", payload)
        uploaded = time.perf_counter() - started
        digest = hashlib.sha256()
        started = time.perf_counter()
        ftp.retrbinary(f"RETR {name}", digest.update, blocksize=BLOCK)
        downloaded = time.perf_counter() - started
        if digest.digest() != hashlib.sha256(payload).digest():
            raise SystemExit(f"downloaded {name} differs from what was uploaded")
        return mib / uploaded, mib / downloaded


def upload_files(port, count, size):
    with connect(port) as ftp:
        for number in range(count):
            upload(ftp, f"file{number}.bin", os.urandom(size))


def small_round(port, count):
    """Files/s: ``count`` small files one after the other."""
    started = time.perf_counter()
    upload_files(port, count, SMALL_FILE)
    return count / (time.perf_counter() - started)


def concurrent_round(port, clients):
    """Files/s: ``clients`` clients uploading at once."""
    failures = []

    def client():
        try:
            upload_files(port, CONCURRENT_FILES, CONCURRENT_FILE)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a concurrent client failed: {failures[0]!r}")
    return clients * CONCURRENT_FILES / (time.perf_counter() - started)


def measure(args, payload):
    """{kind: {workload: best rate}}.  Both servers run at once and take
    turns round by round, so that a busy spell of the machine hits both."""
    kinds = ("bare", "neochat")
    rates = {kind: {} for kind in kinds}

    def keep(kind, workload, rate):
        rates[kind][workload] = max(rate, rates[kind].get(workload, 0))

    with tempfile.TemporaryDirectory(prefix="bench-ftp-") as directory:
        servers = {}
        try:
            for kind in kinds:
                os.mkdir(os.path.join(directory, kind))
                servers[kind] = Server(kind, os.path.join(directory, kind), args.db)
            for _ in range(args.rounds):
                for kind, server in servers.items():
                    up, down = big_round(server.port, payload)
                    keep(kind, "upload MiB/s", up)
                    keep(kind, "download MiB/s", down)
                    keep(kind, "small files/s", small_round(server.port, args.small))
                    keep(kind, "concurrent files/s", concurrent_round(server.port, args.clients))
        finally:
            for server in servers.values():
                server.close()
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=200, help="small files per round")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--db", default="", help="NeoChat database URL (default: SQLite in a temp dir)")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        from pathlib import Path

        kind, directory = args.serve
        if kind == "neochat":
            serve_neochat(Path(directory), args.db)
        else:
            serve_bare(Path(directory))
        return

    payload = os.urandom(args.mib * 1024 * 1024)
    load = os.getloadavg()[0]
    results = measure(args, payload)
    print(f"big: {args.mib} MiB; small: {args.small} x {SMALL_FILE // 1024} KiB; concurrent: {args.clients} clients"
          f" x {CONCURRENT_FILES} x {CONCURRENT_FILE // 1024} KiB; best of {args.rounds}; loopback; "
          f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'workload':20} {'bare':>10} {'neochat':>10} {'ratio':>7}")
    for workload, bare in results["bare"].items():
        neochat = results["neochat"][workload]
        print(f"{workload:20} {bare:10.1f} {neochat:10.1f} {neochat / bare:7.2f}")


if __name__ == "__main__":
    main()
