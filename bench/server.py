"""What the message-server benches share: `twistd neochat` (or the bare
reference router) in a separate process on loopback, on free ports, with a
throwaway data directory."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


UNLIMITED = [arg for name in ("connections_per_address", "messages_per_second", "bytes_per_second")
             for arg in ("--limit", f"{name}=0")] + ["--throttle", "registrations_per_address=0"]


@contextlib.contextmanager
def neochat(*options, cpu=None, data_dir=None, **popen):
    """Yields (message server port, psutil.Process of the server), pinned to
    ``cpu`` if given; ``popen`` goes to subprocess.Popen.  ``data_dir``
    (with the server's ``log``) is kept if given, else a throwaway one."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
        data_dir = str(data_dir)
        command = [TWISTD, "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "log"), "neochat",
                   "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", data_dir,
                   "--ftp", str(free_port()), "--ftp-interface", "127.0.0.1",
                   "--cell", str(free_port(socket.SOCK_DGRAM)), "--cell-interface", "127.0.0.1",
                   # cheap hashes: the benches measure chat and files, not argon2
                   "--argon2-time-cost", "1", "--argon2-memory", "1024",
                   # one load generator on one address, faster than any person
                   *UNLIMITED, *options]
        with serving(command, port, cpu, f"see {data_dir}/log", **popen) as server:
            yield port, server


@contextlib.contextmanager
def reference(cpu=None):
    """The bare line router (bench/reference_router.py): (port, process)."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("reference_router.py")), str(port)]
    with serving(command, port, cpu, "the reference router") as server:
        yield port, server


@contextlib.contextmanager
def serving(command, port, cpu, where, **popen):
    """Runs ``command`` until the block ends, pinned to ``cpu`` if given, once
    ``port`` accepts connections on 127.0.0.1: yields its psutil.Process."""
    if cpu is not None:  # taskset, so that threads started at once are pinned too
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(command, **popen)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"server did not start: {where}")
                time.sleep(0.1)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def cpu_seconds(process):
    """User and system CPU time of ``process`` (a psutil.Process, or anything
    with its ``cpu_times``), in seconds."""
    times = process.cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def rss_sampled(process):
    """Samples ``process``'s resident memory every 50 ms while the block runs;
    yields a dict whose ``before`` and ``peak`` (bytes) are final when it ends."""
    memory = {"before": process.memory_info().rss}
    memory["peak"] = memory["before"]
    done = threading.Event()

    def sample():
        while not done.is_set():
            memory["peak"] = max(memory["peak"], process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield memory
    finally:
        done.set()
        sampler.join()
