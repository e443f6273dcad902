"""neochatctl with no server running: the same verbs straight on the
database (SQLite and MariaDB); what they change holds once the server starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor, threads

from neochat.admin.cli import NOT_RUNNING, OK, REFUSED
from neochat.services.root import build_service
from tests.clients import JsonClient

NEOCHATCTL = str(Path(sys.executable).parent / "neochatctl")


def ctl(settings, *args, password=None):
    """Run the installed neochatctl: (exit status, JSON output or stderr)."""
    result = subprocess.run(
        [NEOCHATCTL, "--data-dir", str(settings.data_dir), "--db", settings.db_url, "--json", *args],
        input=None if password is None else password + "\n", capture_output=True, text=True, timeout=120,
        env=dict(os.environ, NEOCHAT_CONFIG=""),
    )
    if result.returncode == OK:
        return OK, json.loads(result.stdout)
    return result.returncode, result.stderr.strip()


def offline_session(settings):
    """Everything an administrator sets up before the first start."""
    outcomes = {
        "adduser": ctl(settings, "adduser", "alice", password="pw"),
        "adduser bob": ctl(settings, "adduser", "bob", password="pw"),
        "passwd": ctl(settings, "passwd", "alice", password="new"),
        "ban": ctl(settings, "ban", "bob", "--reason", "spam"),
        "registration": ctl(settings, "registration", "closed"),
        "groups": ctl(settings, "groups", "create", "club", "alice"),
        "stats": ctl(settings, "stats"),
        "users": ctl(settings, "users"),
        "online": ctl(settings, "online"),
        "kick": ctl(settings, "kick", "alice"),
        "deluser unknown": ctl(settings, "deluser", "nobody"),
    }
    return outcomes


@pytest_twisted.ensureDeferred
async def test_offline_verbs_change_the_database_the_server_then_uses(settings):
    outcomes = await threads.deferToThread(offline_session, settings)
    assert outcomes["adduser"] == (OK, {"account": "alice"})
    assert outcomes["passwd"] == (OK, {"account": "alice"})
    assert outcomes["ban"][1]["target"] == "bob"
    assert outcomes["registration"] == (OK, {"registration": "closed"})
    assert outcomes["groups"] == (OK, {"group_id": "club", "founder": "alice"})
    assert (outcomes["stats"][1]["accounts"], outcomes["stats"][1]["groups"]) == (2, 1)
    assert "online" not in outcomes["stats"][1]  # only the server knows
    assert [user["user_account"] for user in outcomes["users"][1]] == ["alice", "bob"]
    assert outcomes["online"][0] == NOT_RUNNING and "needs the running server" in outcomes["online"][1]
    assert outcomes["kick"][0] == NOT_RUNNING
    assert outcomes["deluser unknown"] == (REFUSED, "neochatctl deluser: unknown account")

    root = build_service(settings, reactor)
    root.startService()
    await root.ready
    try:
        client = await JsonClient.connect(root.chat_service.ports[0].getHost().port)
        login = {"message_type": "login", "username": "alice", "password": "new"}
        assert (await client.request(login))["content"] == "success"
        bob = await JsonClient.connect(root.chat_service.ports[0].getHost().port)
        reply = await bob.request({"message_type": "login", "username": "bob", "password": "pw"})
        assert reply["reason"] == "account banned"
        reply = await bob.request({"message_type": "register", "username": "carol", "password": "pw"})
        assert reply["reason"] == "registration closed"
        client.close()
        bob.close()
    finally:
        await root.stopService()
    status, deleted = await threads.deferToThread(ctl, settings, "deluser", "alice")
    assert (status, deleted) == (OK, {"account": "alice", "files": 0})
