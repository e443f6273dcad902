"""``twistd neochat`` as a separate process, as a supervisor runs it."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.clients import BlockingJsonClient

TWISTD = str(Path(sys.executable).parent / "twistd")
START_TIMEOUT = 60


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_twistd(args, cwd, env=None, timeout=START_TIMEOUT):
    """Run ``twistd --pidfile= -n neochat ARGS`` to its end: CompletedProcess."""
    return subprocess.run([TWISTD, "--pidfile=", "-n", "neochat", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


class Server:
    """A running ``twistd -n TWISTD_ARGS neochat ARGS`` on a free loopback
    port, with the cell and FTP servers on any free port, SQLite in
    ``cwd/data`` unless told."""

    def __init__(self, cwd, *args, env=None, twistd_args=()):
        self.port = free_port()
        self.data_dir = Path(cwd) / "data"
        self.process = subprocess.Popen(
            [TWISTD, "--pidfile=", "-n", *twistd_args, "neochat", "--listen", f"tcp:{self.port}:interface=127.0.0.1",
             "--cell", "0", "--cell-interface", "127.0.0.1", "--relay-ports", "0-0", "--ftp", "0",
             "--ftp-interface", "127.0.0.1", "--data-dir", str(self.data_dir),
             "--argon2-time-cost", "1", "--argon2-memory", "1024", *args],
            cwd=cwd, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.output = None
        self.signalled = False

    def client(self):
        """A logged-out blocking JSON client, once the server accepts."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return BlockingJsonClient(self.port, newline=True)
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"server did not start: {self.stop()}")
                time.sleep(0.1)

    def send_signal(self, number=signal.SIGTERM):
        self.signalled = True
        self.process.send_signal(number)

    def stop(self):
        """SIGTERM it (unless signalled already), wait for the end; returns the output."""
        if not self.signalled and self.process.poll() is None:
            self.send_signal()
        if self.output is None:
            self.output = self.process.communicate(timeout=60)[0].decode()
        return self.output
