"""neochatctl against a running server (its admin socket), on SQLite and
MariaDB: accounts, sessions, bans, registration, groups, stats."""

import contextlib
import ftplib
import io
import json
import os
import stat

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from neochat.admin.cli import NOT_RUNNING, OK, REFUSED, main
from neochat.services.admin import SOCKET_NAME
from tests.clients import JsonClient
from tests.web_clients import WsClient


class Ctl:
    """Runs ``neochatctl --json`` in a thread, as an administrator would
    while the server runs; returns (exit status, output)."""

    def __init__(self, settings, tmp_path):
        self.base = ["--data-dir", str(settings.data_dir), "--db", settings.db_url]
        self.tmp_path = tmp_path

    async def __call__(self, *args, password=None):
        argv = [*self.base, "--json", *args]
        if password is not None:
            path = self.tmp_path / "password"
            path.write_text(password + "\n")
            argv += ["--password-file", str(path)]
        return await threads.deferToThread(self._run, argv)

    @staticmethod
    def _run(argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        output = json.loads(out.getvalue())
        if status != OK:
            assert output["status"] == status and output["error"] in err.getvalue()
            return status, err.getvalue()
        return status, output


async def login(server, account, password):
    client = await JsonClient.connect(server.port)
    server.clients.append(client)
    reply = await client.request({"message_type": "login", "username": account, "password": password})
    return client, reply


def ftp_session(port, account, password):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    ftp.login(account, password)
    return ftp


def ftp_refused(ftp):
    try:
        ftp.pwd()
        return "ok"
    except ftplib.error_temp as error:
        return str(error)
    finally:
        ftp.close()


def ftp_login(port, account, password):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    try:
        ftp.login(account, password)
        return "ok"
    except ftplib.error_perm as error:
        return str(error)
    finally:
        ftp.close()


@pytest_twisted.ensureDeferred
async def test_the_admin_socket_is_private(server, settings):
    mode = os.stat(settings.data_dir / SOCKET_NAME).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest_twisted.ensureDeferred
async def test_accounts_sessions_and_kicks(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    assert await ctl("adduser", "alice", password="first") == (OK, {"account": "alice"})
    status, error = await ctl("adduser", "alice", password="again")
    assert (status, error.strip()) == (REFUSED, "neochatctl adduser: account exists")
    client, reply = await login(server, "alice", "first")
    assert reply["content"] == "success"

    status, users = await ctl("users", "ali")
    assert status == OK and [(u["user_account"], u["online"]) for u in users] == [("alice", True)]
    assert await ctl("online") == (OK, [{"account": "alice", "address": "127.0.0.1"}])

    assert await ctl("passwd", "alice", password="second") == (OK, {"account": "alice"})
    assert (await login(server, "bob", "x"))[1]["reason"] == "wrong account or password"
    assert (await login(server, "alice", "first"))[1]["reason"] == "wrong account or password"
    client, reply = await login(server, "alice", "second")
    assert reply["content"] == "success"

    assert await ctl("kick", "alice", "--reason", "maintenance") == (OK, {"account": "alice"})
    assert (await client.next("kicked")) == {"message_type": "kicked", "reason": "maintenance"}
    await client.closed
    status, error = await ctl("kick", "alice")
    assert (status, error.strip()) == (REFUSED, "neochatctl kick: not online")
    status, error = await ctl("passwd", "nobody", password="x")
    assert (status, error.strip()) == (REFUSED, "neochatctl passwd: unknown account")


async def ban_while_online(server, ctl, account, *ban):
    """Add ``account`` (unless it exists), log it in, ban (``ban``: the ban
    arguments): the logged-in client and the ban's result."""
    await ctl("adduser", account, password="pw")
    client, _ = await login(server, account, "pw")
    status, result = await ctl("ban", *ban)
    assert status == OK and result["disconnected"] == 1
    return client, result


@pytest_twisted.ensureDeferred
async def test_a_banned_account_is_kicked_and_cannot_log_in(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    ftp_port = server.root.ftp_service.address[1]
    await ctl("adduser", "mallory", password="pw")
    ftp = await threads.deferToThread(ftp_session, ftp_port, "mallory", "pw")
    client, _ = await ban_while_online(server, ctl, "mallory", "mallory", "--reason", "spam")
    assert (await client.next("kicked"))["reason"] == "account banned"
    assert await threads.deferToThread(ftp_refused, ftp) == "421 account banned."
    _, reply = await login(server, "mallory", "pw")
    assert reply == {"message_type": "login", "content": "fail", "reason": "account banned"}
    assert "banned" in await threads.deferToThread(ftp_login, ftp_port, "mallory", "pw")
    status, bans = await ctl("bans")
    assert [(b["kind"], b["target"], b["reason"]) for b in bans] == [("account", "mallory", "spam")]
    assert (await ctl("unban", "mallory"))[0] == OK
    assert (await login(server, "mallory", "pw"))[1]["content"] == "success"
    assert await threads.deferToThread(ftp_login, ftp_port, "mallory", "pw") == "ok"
    status, error = await ctl("unban", "mallory")
    assert (status, error.strip()) == (REFUSED, "neochatctl unban: account not banned")


@pytest_twisted.ensureDeferred
async def test_a_banned_address_cannot_connect(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    connected, ban = await ban_while_online(server, ctl, "carol", "--address", "127.0.0.0/8")
    assert ban["target"] == "127.0.0.0/8"
    await connected.closed
    refused = await JsonClient.connect(server.port)
    await refused.closed  # closed at once, before a word
    ftp_port = server.root.ftp_service.address[1]
    assert "banned" in await threads.deferToThread(ftp_login, ftp_port, "carol", "pw")
    status, error = await ctl("ban", "--address", "not-an-ip")
    assert status == REFUSED and "not an IP address or network" in error
    assert (await ctl("unban", "--address", "127.0.0.0/8"))[0] == OK
    assert (await login(server, "carol", "pw"))[1]["content"] == "success"


@pytest_twisted.ensureDeferred
async def test_banning_an_address_drops_its_open_tcp_and_websocket_connections(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    tcp, ws = await server.client(), await WsClient.connect(server.http_port)
    await tcp.register_and_login("carol")
    await ws.register_and_login("dave")
    elsewhere = await connectProtocol(  # another address of the loopback network
        TCP4ClientEndpoint(reactor, "127.0.0.1", server.port, bindAddress=("127.0.0.2", 0)), JsonClient())
    server.clients.append(elsewhere)
    await elsewhere.register_and_login("erin")
    status, result = await ctl("ban", "--address", "127.0.0.1")
    assert status == OK and result["disconnected"] == 2
    banned = {"message_type": "error", "content": "fail", "reason": "address banned"}
    await tcp.closed
    assert await tcp.next("error") == banned
    await ws.closed
    assert (await ws.next("error"), ws.close_code) == (banned, 4403)
    with pytest.raises(ConnectionError):  # the handshake is refused (403)
        await WsClient.connect(server.http_port)
    elsewhere.send({"message_type": "ping"})  # another address keeps being served
    assert await elsewhere.next("pong") == {"message_type": "pong"}
    assert (await ctl("unban", "--address", "127.0.0.1"))[0] == OK
    again = await WsClient.connect(server.http_port)
    assert (await again.request({"message_type": "login", "username": "dave", "password": "secret"}))[
        "content"] == "success"
    await again.close()


@pytest_twisted.ensureDeferred
async def test_closed_registration_refuses_register_but_not_adduser(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    assert await ctl("registration") == (OK, {"registration": "open"})
    assert await ctl("registration", "closed") == (OK, {"registration": "closed"})
    client = await JsonClient.connect(server.port)
    server.clients.append(client)
    reply = await client.request({"message_type": "register", "username": "dave", "password": "pw"})
    assert reply == {"message_type": "register", "content": "fail", "reason": "registration closed"}
    assert (await ctl("adduser", "dave", password="pw"))[0] == OK
    stored = await server.root.admin_store.settings()
    assert stored == {"registration": "closed"}  # kept across restarts
    assert (await ctl("registration", "open"))[0] == OK
    reply = await client.request({"message_type": "register", "username": "erin", "password": "pw"})
    assert reply["content"] == "success"


@pytest_twisted.ensureDeferred
async def test_groups_stats_and_deluser(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    for account in ("frank", "grace"):
        await ctl("adduser", account, password="pw")
    assert await ctl("groups", "create", "club", "frank", "--introduction", "hi") == (
        OK, {"group_id": "club", "founder": "frank"})
    status, error = await ctl("groups", "create", "club", "grace")
    assert (status, error.strip()) == (REFUSED, "neochatctl groups: group exists")
    await server.root.store.groups.add_member("club", "grace", 1)
    assert (await ctl("groups", "role", "club", "grace", "admin"))[0] == OK
    assert (await ctl("groups", "role", "club", "grace", "creator"))[0] == OK
    status, shown = await ctl("groups", "show", "club")
    assert status == OK and {m["user_account"]: m["permissions"] for m in shown["members"]} == {
        "frank": "admin", "grace": "creator"}
    assert (await ctl("groups", "list"))[1] == [
        {"group_id": "club", "founder": "grace", "introduction": "hi", "member_count": 2}]

    client, _ = await login(server, "frank", "pw")
    upload = await server.root.files.begin_upload("frank", "notes.txt")
    upload.write(b"frank's notes")
    info = await upload.finish()
    stored_file = settings.data_dir / "files" / info.name
    assert stored_file.exists()
    status, stats = await ctl("stats")
    assert status == OK
    assert (stats["accounts"], stats["groups"], stats["online"], stats["files"], stats["file_bytes"],
            stats["calls"]) == (2, 1, 1, 1, len(b"frank's notes"), 0)

    assert await ctl("deluser", "frank") == (OK, {"account": "frank", "files": 1})
    await client.closed
    assert not stored_file.exists()
    assert (await ctl("users"))[1][0]["user_account"] == "grace"
    assert (await ctl("groups", "delete", "club"))[0] == OK
    assert await ctl("groups", "list") == (OK, [])


@pytest_twisted.ensureDeferred
async def test_live_only_commands_say_the_server_is_not_running(settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    status, error = await ctl("online")
    assert status == NOT_RUNNING and "needs the running server" in error
