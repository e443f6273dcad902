"""The plugin daemon over real HTTP: its token, long polls, sending, lookups;
and the real ``neochat-client daemon`` process driven by the example bot."""

import json
import os
import stat
import sys
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, threads

from neochat.client import daemon
from neochat.client.daemon import site, write_token
from tests.client_helpers import Collector, library_client
from tests.udp import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def db_url(tmp_path):
    """No storage is exercised here beyond what the library tests cover: SQLite only."""
    return f"sqlite:{tmp_path / 'test.sqlite'}"


class Http:
    """A plugin's view: urllib in a thread, as a script would call it."""

    def __init__(self, port, token):
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(self, method, path, body=None, token=None, authorize=True):
        headers = {"Authorization": f"Bearer {token or self.token}"} if authorize else {}
        data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        return threads.deferToThread(self._call, urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers))

    @staticmethod
    def _call(request):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


async def serve(server, tmp_path, account="bot"):
    client = await library_client(server, account, ftp_port=server.root.ftp_service.address[1])
    token = write_token(str(tmp_path / "config" / "token"))
    served = site(client, token)
    port = reactor.listenTCP(0, served, interface="127.0.0.1")
    server.clients.append(port)
    port.close = port.stopListening
    http = Http(port.getHost().port, token)
    http.api = served.resource
    return client, http


def test_the_token_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    token = write_token(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token and len(token) >= 40


@pytest_twisted.ensureDeferred
async def test_requests_without_the_token_are_refused(server, tmp_path):
    _, http = await serve(server, tmp_path)
    assert await http.call("GET", "/me", token="guess") == (401, {"error": "missing or wrong token"})
    assert (await http.call("GET", "/me", authorize=False))[0] == 401
    code, me = await http.call("GET", "/me")
    assert (code, me["user_account"]) == (200, "bot")


@pytest_twisted.ensureDeferred
async def test_a_plugin_polls_sends_and_looks_up_over_http(server, tmp_path):
    bot, http = await serve(server, tmp_path)
    alice = await library_client(server, "alice")
    poll = http.call("GET", "/messages?wait=10")
    await wait_for(lambda: http.api._pollers)
    await library_client(server, "carol")  # presence news: the poll keeps waiting
    await alice.send_message("bot", "ping 你好")
    code, body = await poll
    assert code == 200 and [m["content"] for m in body["messages"]] == ["ping 你好"]
    assert await http.call("GET", "/messages?wait=0") == (200, {"messages": []})

    words = Collector(alice, "word")
    code, receipt = await http.call("POST", "/send", {"to": "alice", "content": "pong 👍"})
    assert code == 200 and receipt["id"] > 0
    assert (await words.next())["content"] == "pong 👍"

    code, history = await http.call("GET", "/history?with=alice&number=1")
    assert [m["content"] for m in history["messages"]] == ["pong 👍"]
    code, profile = await http.call("GET", "/users/alice")
    assert (code, profile["user_account"]) == (200, "alice")
    assert (await http.call("GET", "/users/nobody"))[0] == 404
    assert (await http.call("GET", "/online"))[1] == {"online": ["alice", "bot", "carol"]}
    code, created = await http.call("POST", "/operation", {"message_type": "group_create", "group_id": "bots"})
    assert (code, created["permissions"]) == (200, "creator")
    assert (await http.call("POST", "/send", b"not json"))[0] == 400
    assert (await http.call("POST", "/operation", {"message_type": "delete_account", "password": "x"}))[0] == 400
    assert (await http.call("GET", "/messages?wait=999"))[0] == 400
    for path in ("/nothing", "/users", "/me/too", "/"):
        assert await http.call("GET", path) == (404, {"error": "no such endpoint"})
    assert (await http.call("GET", "/me", token="caf\u00e9"))[0] == 401


@pytest_twisted.ensureDeferred
async def test_a_plugin_receives_accepts_and_sends_files(server, tmp_path):
    bot, http = await serve(server, tmp_path)
    alice = await library_client(server, "alice")
    source = tmp_path / "in.txt"
    source.write_bytes("文件 ✓".encode())
    await alice.send_file("bot", str(source))
    code, body = await http.call("GET", "/messages?wait=10")
    offer = next(m for m in body["messages"] if m["message_type"] == "file")
    target = str(tmp_path / "saved.txt")
    assert await http.call("POST", "/files/accept", {"offer": offer, "path": target}) == (200, {"path": target})
    assert open(target, "rb").read() == source.read_bytes()

    offers = Collector(alice, "file")
    code, receipt = await http.call("POST", "/files", {"to": "alice", "path": target})
    assert (code, receipt["file_length"]) == (200, len(source.read_bytes()))
    assert (await offers.next())["file_name"] == "saved.txt"
    assert (await http.call("POST", "/files", {"to": "alice", "path": str(tmp_path / "missing")}))[0] == 400

    words = Collector(alice, "word")
    code, shared = await http.call("POST", "/ftp/share", {"to": "alice", "path": target, "text": "via FTP"})
    assert code == 200 and (await words.next())["content"] == f"via FTP <file>{shared['name']}</file>"
    fetched = str(tmp_path / "fetched.txt")
    assert await http.call("POST", "/ftp/get", {"name": shared["name"], "path": fetched}) == (200, {"path": fetched})
    assert open(fetched, "rb").read() == source.read_bytes()
    assert (await http.call("POST", "/files/accept", {"offer": {"file_name": "x"}, "path": target}))[0] == 400


class Lines(protocol.ProcessProtocol):
    def __init__(self):
        self.first_line = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if b"\n" in self.output and not self.first_line.called:
            self.first_line.callback(self.output.split(b"\n")[0].decode())

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def spawn(arguments, environment):
    lines = Lines()
    process = reactor.spawnProcess(lines, sys.executable, [sys.executable, *arguments],
                                   env={**os.environ, **environment}, path=ROOT)
    return process, lines


@pytest_twisted.ensureDeferred
async def test_the_daemon_process_serves_the_example_echo_bot(server, tmp_path):
    token_file = str(tmp_path / "token")
    process, daemon_lines = spawn(
        ["-m", "neochat.client", "daemon", "--server", f"127.0.0.1:{server.port}", "--account", "echo",
         "--register", "--listen", "0", "--token-file", token_file],
        {"NEOCHAT_PASSWORD": "secret"})
    try:
        line = await daemon_lines.first_line.addTimeout(30, reactor)
        assert line.startswith("serving http://127.0.0.1:"), daemon_lines.output
        url = line.split()[1]
        bot, bot_lines = spawn(["examples/echo_bot.py", "--url", url, "--token-file", token_file, "--count", "1"], {})
        assert await bot_lines.first_line.addTimeout(30, reactor) == "echo bot running as echo"
        alice = await library_client(server, "alice")
        words = Collector(alice, "word")
        await alice.send_message("echo", "hello bot")
        assert (await words.next())["content"] == "echo: hello bot"
        assert await bot_lines.ended.addTimeout(30, reactor) == 0
    finally:
        process.signalProcess("TERM")
        await daemon_lines.ended.addTimeout(30, reactor)


@pytest_twisted.ensureDeferred
async def test_long_polls_are_bounded_and_the_others_keep_being_served(server, tmp_path, monkeypatch):
    monkeypatch.setattr(daemon, "MAX_POLLERS", 1)
    bot, http = await serve(server, tmp_path)
    alice = await library_client(server, "alice")
    first = http.call("GET", "/messages?wait=10")
    await wait_for(lambda: http.api._pollers)
    assert await http.call("GET", "/messages?wait=10") == (503, {"error": "1 long polls already wait"})
    assert (await http.call("GET", "/me"))[0] == 200
    await alice.send_message("bot", "still served")
    assert [m["content"] for m in (await first)[1]["messages"]] == ["still served"]
