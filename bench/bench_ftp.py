"""Upload and download throughput of the NeoChat FTP service against a bare
pyftpdlib server, on loopback.  A script, not a test.

    python bench/bench_ftp.py [--mib 64] [--rounds 3] [--db URL]

Each server runs in a subprocess (this file with --serve neochat|bare DIR):
NeoChat's FTPService inside a reactor, with its database (SQLite in DIR
unless --db), accounts, quota, sha256 and fsync; the bare one is pyftpdlib's
FTPServer with a DummyAuthorizer, writing straight to disk.  This process is
the ftplib client.  Every round uploads then downloads one file of random
bytes; the best round of each counts.  Prints MiB/s and NeoChat's ratio.
"""

import argparse
import ftplib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD = "bench", "bench-password"
BLOCK = 256 * 1024
TIMEOUT = 120  # seconds, per FTP operation


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


def one_round(port, payload):
    """(upload seconds, download seconds) for ``payload``, checked."""
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", port, timeout=TIMEOUT)
        ftp.login(USER, PASSWORD)
        started = time.perf_counter()
        reply = ftp.storbinary("STOR bench.bin", io.BytesIO(payload), blocksize=BLOCK)
        uploaded = time.perf_counter() - started
        name = reply.split("file: ")[1] if "file: " in reply else "bench.bin"
        digest = hashlib.sha256()
        started = time.perf_counter()
        ftp.retrbinary(f"RETR {name}", digest.update, blocksize=BLOCK)
        downloaded = time.perf_counter() - started
        if digest.digest() != hashlib.sha256(payload).digest():
            raise SystemExit(f"downloaded {name} differs from what was uploaded")
        return uploaded, downloaded


def measure(kind, payload, rounds, db_url):
    with tempfile.TemporaryDirectory(prefix=f"bench-ftp-{kind}-") as directory:
        server = Server(kind, directory, db_url)
        try:
            times = [one_round(server.port, payload) for _ in range(rounds)]
        finally:
            server.close()
    mib = len(payload) / (1024 * 1024)
    return mib / min(up for up, _ in times), mib / min(down for _, down in times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
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
    results = {kind: measure(kind, payload, args.rounds, args.db) for kind in ("bare", "neochat")}
    print(f"{args.mib} MiB file, best of {args.rounds} rounds, loopback, MiB/s")
    print(f"{'server':10} {'upload':>10} {'download':>10}")
    for kind, (up, down) in results.items():
        print(f"{kind:10} {up:10.1f} {down:10.1f}")
    (bare_up, bare_down), (neo_up, neo_down) = results["bare"], results["neochat"]
    print(f"{'ratio':10} {neo_up / bare_up:10.2f} {neo_down / bare_down:10.2f}   (neochat / bare)")


if __name__ == "__main__":
    main()
