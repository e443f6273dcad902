"""Start and stop as a supervisor sees them: a failed start exits non-zero
with one line saying what failed and what to do; SIGTERM stops gracefully,
tells the clients and leaves a complete SQLite file."""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.application import service
from twisted.internet import defer, reactor, task

from neochat.services import lifecycle
from neochat.services.root import build_service
from tests.twistd_process import Server, free_port, run_twistd

ROOT = Path(__file__).resolve().parents[1]


def assert_failed_start(result, *expected):
    output = result.stdout + result.stderr
    assert result.returncode == lifecycle.START_FAILED, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "could not start" in line]
    assert len(lines) == 1, output
    for text in expected:
        assert text in lines[0], output


def test_a_port_in_use_fails_the_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_twistd(["--listen", f"tcp:{port}:interface=127.0.0.1", "--cell", "0", "--ftp", "0",
                             "--data-dir", "data"], tmp_path)
    assert_failed_start(result, f"cannot listen on 127.0.0.1:{port}", "Address already in use",
                        "choose another one (--listen)")


def test_an_ftp_port_in_use_names_the_ftp_options(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_twistd(["--listen", "tcp:0:interface=127.0.0.1", "--cell", "0", "--ftp", str(port),
                             "--ftp-interface", "127.0.0.1", "--data-dir", "data"], tmp_path)
    assert_failed_start(result, "ftp server: [Errno 98] Address already in use; check --ftp, --ftp-interface")


def test_a_second_server_on_the_same_data_dir_fails_the_start(tmp_path):
    first = Server(tmp_path)
    try:
        first.client().close()  # serving
        second = run_twistd(["--listen", "tcp:0:interface=127.0.0.1", "--cell", "0", "--ftp", "0",
                             "--data-dir", str(first.data_dir)], tmp_path)
    finally:
        first.stop()
    assert_failed_start(second, f"cannot listen on {first.data_dir}/admin.sock",
                        "another NeoChat runs with this data dir")


def test_an_unreachable_database_fails_the_start(tmp_path):
    pytest.importorskip("MySQLdb")
    url = f"mysql://neochat:secret@127.0.0.1:{free_port()}/neochat"
    result = run_twistd(["--listen", "tcp:0:interface=127.0.0.1", "--cell", "0", "--ftp", "0",
                         "--data-dir", "data", "--db", url], tmp_path)
    assert_failed_start(result, "database mysql://neochat@127.0.0.1", "unusable", "Can't connect",
                        "check that it runs")
    assert "secret" not in result.stdout + result.stderr


def test_an_unopenable_sqlite_file_fails_the_start(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    result = run_twistd(["--listen", "tcp:0:interface=127.0.0.1", "--cell", "0", "--ftp", "0",
                         "--data-dir", "data", "--db", f"sqlite:{tmp_path}/not-a-dir/neochat.sqlite"], tmp_path)
    assert_failed_start(result, "database sqlite:", "unable to open database file")


def test_a_missing_certificate_fails_the_start(tmp_path):
    result = run_twistd(["--listen", f"ssl:0:privateKey={tmp_path}/key.pem:certKey={tmp_path}/cert.pem",
                         "--data-dir", "data"], tmp_path)
    assert_failed_start(result, "cannot use --listen ssl:0", "key.pem", "readable PEM")


def test_a_bad_option_is_one_line_and_exit_status_1(tmp_path):
    result = run_twistd(["--voice", "sip"], tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["twistd neochat: Parameter type enforcement failed: sip"]


def test_sigterm_tells_the_clients_and_leaves_a_complete_sqlite_file(tmp_path):
    server = Server(tmp_path)
    try:
        sender = server.client()
        sender.send({"message_type": "register", "username": "alice", "password": "pw"})
        sender.receive("register")
        sender.send({"message_type": "login", "username": "alice", "password": "pw", "acks": True})
        sender.receive("login")  # with acks, each sent message gets a success reply
        receiver = server.client()
        receiver.login("bob")
        receiver.close()  # bob's message waits in the database
        sender.send({"message_type": "word", "chat_type": "private", "send_user": "alice", "rece_user": "bob",
                     "content": "kept"})
        assert sender.receive("word")["content"] == "success"  # acknowledged: committed
        server.send_signal(signal.SIGTERM)
        notice = sender.receive("shutdown")
    finally:
        output = server.stop()
    assert notice == {"message_type": "shutdown", "reason": "server shutting down"}
    assert server.process.returncode in (0, -signal.SIGTERM), output
    assert "NeoChat stopped" in output and "Traceback" not in output, output
    wal = server.data_dir / "neochat.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy.sqlite"
    shutil.copy(server.data_dir / "neochat.sqlite", alone)  # the file alone, as a naive backup
    with sqlite3.connect(alone) as db:
        assert db.execute("SELECT author, rece_user, message FROM messages").fetchall() == [("alice", "bob", "kept")]


def test_a_second_signal_during_the_stop_forces_it():
    forced = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        lifecycle.force_on_second_signal(forced.append)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert forced == ["signal SIGTERM during the stop", "signal SIGINT during the stop"]


def test_systemd_is_told_ready_and_stopping(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(60)
        server = Server(tmp_path, env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        try:
            ready = notify.recv(100)
            server.client().login("alice")  # serving by then
            server.send_signal(signal.SIGTERM)
            stopping = notify.recv(100)
        finally:
            server.stop()
    assert (ready, stopping) == (b"READY=1", b"STOPPING=1")


def test_the_systemd_unit_verifies_and_its_command_runs(tmp_path):
    unit = (ROOT / "contrib" / "neochat.service").read_text()
    assert "Type=notify" in unit
    local = unit.replace("/opt/neochat/venv/bin", str(Path(sys.executable).parent))
    local = local.replace("User=neochat", "User=root").replace("Group=neochat", "Group=root")
    (tmp_path / "neochat.service").write_text(local)
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "neochat.service")],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0 and "neochat.service" not in verified.stderr, verified.stderr
    start = next(line for line in local.splitlines() if line.startswith("ExecStart="))
    command = start.partition("=")[2].split() + ["--help"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0 and "--config" in shown.stdout


@pytest_twisted.ensureDeferred
async def test_a_checkpoint_makes_the_sqlite_file_alone_complete(server, settings, tmp_path):
    if not settings.db_url.startswith("sqlite:"):
        pytest.skip("SQLite's write-ahead log")
    server.root.db.checkpointer.interval = float("inf")  # only the checkpoints below
    await server.root.admin_store.checkpoint()  # the schema is in the file
    await server.logged_in("alice")
    path = settings.db_url[len("sqlite:"):]

    def accounts_in_a_copy(name):
        shutil.copy(path, tmp_path / name)  # the file alone, the pool still open
        with sqlite3.connect(tmp_path / name) as db:
            return db.execute("SELECT user_account FROM users").fetchall()

    assert accounts_in_a_copy("before.sqlite") == []  # the row is still in the WAL
    await server.root.admin_store.checkpoint()
    assert accounts_in_a_copy("after.sqlite") == [("alice",)]


@pytest_twisted.ensureDeferred
async def test_a_stop_that_hangs_is_forced_after_the_timeout(settings, monkeypatch):
    forced = []
    monkeypatch.setattr(lifecycle, "force_exit", forced.append)
    monkeypatch.setattr(lifecycle, "STOP_TIMEOUT", 0.2)
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    root = build_service(settings, reactor, owns_process=True)
    stuck = defer.Deferred()

    class Stuck(service.Service):
        def stopService(self):
            super().stopService()
            return stuck

    Stuck().setServiceParent(root)
    try:
        root.startService()
        await root.ready
        stopping = root.stopService()
        await task.deferLater(reactor, 0.5, lambda: None)
        assert forced == ["still stopping after 0.2 s"]
        stuck.callback(None)
        await stopping
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
