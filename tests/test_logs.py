"""Log lines are written in batches, within WRITE_DELAY, at once for a
warning or a full buffer, and all of them by a clean stop."""

import json
import signal
import time

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.logger import Logger

from neochat import logs
from tests.twistd_process import Server

WAIT = 20  # seconds a test waits for a line on a loaded machine


class Writes:
    """A log file that records each write."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass

    def text(self):
        return "".join(self.writes)


class Reactor(task.Clock):
    """A clock with the reactor's running flag and shutdown triggers."""

    running = True

    def __init__(self):
        super().__init__()
        self.at_shutdown = []

    def addSystemEventTrigger(self, phase, event, call):
        self.at_shutdown.append(call)

    def stop(self):
        self.running = False
        for call in self.at_shutdown:
            call()


def batched_log():
    out, reactor = Writes(), Reactor()
    return out, reactor, Logger(observer=logs.BatchedLog(out, logs.LINES["text"], reactor))


@pytest_twisted.ensureDeferred
async def test_lines_wait_at_most_the_write_delay_then_go_in_one_write():
    out, reactor, log = batched_log()
    log.info("first")
    log.info("second")
    reactor.advance(logs.WRITE_DELAY * 0.9)
    assert out.writes == []
    reactor.advance(logs.WRITE_DELAY * 0.1)
    assert len(out.writes) == 1 and out.text().index("first") < out.text().index("second")
    log.info("third")  # a new batch, a new delay
    reactor.advance(logs.WRITE_DELAY)
    assert len(out.writes) == 2 and "third" in out.writes[1]


@pytest_twisted.ensureDeferred
async def test_a_warning_is_written_at_once_after_what_waited():
    out, reactor, log = batched_log()
    log.info("before")
    log.warn("trouble")
    assert len(out.writes) == 1 and out.text().index("before") < out.text().index("trouble")
    reactor.advance(logs.WRITE_DELAY)
    assert len(out.writes) == 1  # nothing was left waiting


@pytest_twisted.ensureDeferred
async def test_a_full_buffer_is_written_at_once_and_later_lines_wait_again():
    out, reactor, log = batched_log()
    line = "x" * 1000
    for _ in range(logs.BATCH_BYTES // len(line) + 1):
        log.info(line)
    assert len(out.writes) == 1 and len(out.writes[0]) >= logs.BATCH_BYTES  # no time passed
    log.info("next")
    assert len(out.writes) == 1
    reactor.advance(logs.WRITE_DELAY)
    assert "next" in out.writes[1]


@pytest_twisted.ensureDeferred
async def test_the_reactor_stopping_writes_what_waits_and_later_lines_at_once():
    out, reactor, log = batched_log()
    log.info("last of the run")
    reactor.stop()
    assert "last of the run" in out.text()
    log.info("after the stop")
    assert "after the stop" in out.text()


def log_file_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def wait_for_line(path, text):
    deadline = time.monotonic() + WAIT
    while not any(text in line for line in log_file_lines(path)):
        assert time.monotonic() < deadline, f"no {text!r} in {log_file_lines(path)}"
        time.sleep(0.05)


def test_a_running_server_writes_its_lines_without_a_stop(tmp_path):
    server = Server(tmp_path, twistd_args=("--logfile", "log"))
    try:
        server.client().login("alice")
        wait_for_line(tmp_path / "log", "login alice from 127.0.0.1")
        assert server.process.poll() is None
    finally:
        server.stop()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_lines_logged_just_before_sigterm_are_in_the_file(tmp_path, log_format):
    server = Server(tmp_path, "--log-format", log_format, twistd_args=("--logfile", "log"))
    try:
        client = server.client()
        client.login("alice")
        server.send_signal(signal.SIGTERM)
    finally:
        server.stop()
    assert server.process.returncode in (0, -signal.SIGTERM)  # a clean stop
    lines = log_file_lines(tmp_path / "log")
    if log_format == "json":
        lines = [json.loads(line)["log_format"] for line in lines if line.strip()]
    assert any("login {account} from {address}" in line or "login alice from" in line for line in lines)
    assert any("NeoChat stopped" in line for line in lines)
    assert "Server Shut Down." in lines[-1]  # logged by twistd after its reactor stopped


def test_sigusr1_rotates_the_log_file(tmp_path):
    server = Server(tmp_path, twistd_args=("--logfile", "log"))
    try:
        server.client().close()  # serving
        wait_for_line(tmp_path / "log", "NeoChat ready")
        server.send_signal(signal.SIGUSR1)
        server.signalled = False  # still to be stopped
        wait_for_line(tmp_path / "log.1", "NeoChat ready")
        server.client().login("alice")
        wait_for_line(tmp_path / "log", "login alice from 127.0.0.1")
    finally:
        server.stop()
