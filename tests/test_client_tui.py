"""The terminal client against a running server, driven by textual's Pilot in
a process of its own (tests/tui_driver.py) and judged by what its screen
shows: register and log in, a message both ways with an unread count, Chinese
text and emoji, a friend request accepted, a group managed by role, a file
offer accepted, a file shared over FTP fetched with /get, a call, quitting."""

import json
import os
import re
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from tests.client_helpers import Collector, library_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 30


@pytest.fixture
def db_url(tmp_path):
    """The library tests cover both databases; the screen needs one."""
    return f"sqlite:{tmp_path / 'test.sqlite'}"


class Terminal(protocol.ProcessProtocol):
    """The driver process: send a command, get the screen back."""

    def __init__(self):
        self.replies = defer.DeferredQueue()
        self.ended = defer.Deferred()
        self.buffer = b""
        self.errors = b""
        self.screen = ""

    def outReceived(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.replies.put(json.loads(line)["screen"])

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)

    async def do(self, **command):
        self.transport.write(json.dumps(command).encode() + b"\n")
        waiting = self.replies.get().addTimeout(TIMEOUT, reactor)
        try:
            self.screen = await waiting
        except defer.TimeoutError:
            raise AssertionError(f"the terminal did not answer; stderr: {self.errors.decode()}") from None
        return self.screen

    async def until(self, pattern):
        """Let the client work until its screen matches ``pattern``."""
        for _ in range(100):
            if re.search(pattern, await self.do(pause=0.1)):
                return self.screen
        raise AssertionError(f"{pattern!r} never showed; the screen:\n{self.screen}\nstderr: {self.errors.decode()}")


@pytest_twisted.ensureDeferred
async def test_the_terminal_client_logs_in_chats_counts_unread_and_accepts_a_file(server, tmp_path):
    downloads = tmp_path / "downloads"
    terminal = Terminal()
    process = reactor.spawnProcess(terminal, sys.executable,
                                   [sys.executable, "tests/tui_driver.py", str(server.port), str(downloads),
                                    str(server.root.ftp_service.address[1])],
                                   env=dict(os.environ), path=ROOT)
    try:
        assert "password" in await terminal.do(pause=0.2)
        await terminal.do(type="alice", press=["tab"])
        await terminal.do(type="secret")
        await terminal.do(click="#login")  # no such account yet: said in place
        await terminal.until("wrong account or password")
        await terminal.do(click="#register")
        await terminal.until("logged in as alice")

        bob = await library_client(server, "bob", ftp_port=server.root.ftp_service.address[1])
        words = Collector(bob, "word")
        await bob.send_message("alice", "你好 alice 👋")
        screen = await terminal.until(r"bob\s+1\b")  # the unread count beside bob

        await terminal.do(type="/msg bob", press=["enter"])
        screen = await terminal.until("bob: 你好 alice 👋")
        assert not re.search(r"bob\s+1\b", screen)  # read now

        await terminal.do(type="hi bob, 收到 ✅", press=["enter"])
        assert (await words.next())["content"] == "hi bob, 收到 ✅"
        await terminal.until("alice: hi bob, 收到 ✅")

        accepted = Collector(bob, "friend_accept")
        await bob.friend("request", "alice")
        await terminal.until("friend request from bob: /accept or /reject")
        await terminal.do(type="/accept", press=["enter"])
        assert (await accepted.next())["friend"] == "alice"

        await terminal.do(type="/create dev 开发组", press=["enter"])
        await terminal.until("created #dev")
        await bob.group("join", "dev")
        await terminal.do(type="/promote bob", press=["enter"])
        await terminal.until("promote: bob in #dev")
        await terminal.do(type="/members", press=["enter"])
        await terminal.until(r"#dev 开发组 · 2 members: alice \(creator\), bob \(admin\)")
        await bob.send_message("dev", "group 你好", group=True)
        await terminal.until("bob: group 你好")
        await terminal.do(type="/msg bob", press=["enter"])

        await terminal.do(type="/nonsense", press=["enter"])
        await terminal.until("unknown command /nonsense")

        notes = tmp_path / "notes.txt"
        notes.write_bytes("第一行\nline two\n".encode())
        await bob.send_file("alice", str(notes))
        await terminal.until("bob sends you notes.txt")
        await terminal.do(press=["a"])
        await terminal.until("saved")
        assert (downloads / "notes.txt").read_bytes() == notes.read_bytes()

        shared, _ = await bob.share_file("alice", str(notes))  # over FTP this time
        await terminal.until(f"bob shared {shared}")
        await terminal.do(type=f"/get {shared}", press=["enter"])
        await terminal.until(f"saved .*{shared}")
        assert (downloads / shared).read_bytes() == notes.read_bytes()

        cancelled = bob.calls.place("alice")  # rings, then bob gives up
        await terminal.until("bob is calling. Answer?")
        bob.calls.hang_up(cancelled)
        screen = await terminal.until(r"call with bob ended \(closed\)")
        assert "Answer?" not in screen

        ringing = defer.Deferred()
        bob.calls.on_call = ringing.callback
        await terminal.do(type="/call", press=["enter"])  # the open chat's peer
        await terminal.until("calling bob")
        call = await ringing.addTimeout(TIMEOUT, reactor)
        bob.calls.answer(call)
        await terminal.until("in a call with bob")
        bob.calls.hang_up(call)
        await terminal.until(r"call with bob ended \(closed\)")

        await terminal.do(press=["ctrl+q"])
        assert await terminal.ended.addTimeout(TIMEOUT, reactor) == 0, terminal.errors.decode()
    finally:
        if not terminal.ended.called:
            process.signalProcess("KILL")
            await terminal.ended
