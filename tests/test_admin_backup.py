"""neochatctl backup while the server is under load, and restore into an
empty data dir: every message acknowledged before the backup began and
every file is there, on SQLite and MariaDB."""

import dataclasses

import pytest_twisted
from twisted.internet import defer, reactor, task

from neochat.admin.cli import OK, REFUSED
from neochat.services.root import build_service
from tests.conftest import _mysql_database
from tests.test_admin import Ctl


async def send_until(client, stop, acknowledged):
    """Private messages alice -> bob, one after another, until ``stop``."""
    number = 0
    while not stop:
        number += 1
        reply = await client.request({"message_type": "word", "chat_type": "private", "send_user": "alice",
                                      "rece_user": "bob", "content": f"message {number}"})
        assert reply["content"] == "success", reply
        acknowledged.append(reply["id"])


async def upload(library, account, name, data):
    upload = await library.begin_upload(account, name)
    upload.write(data)
    return (await upload.finish()).name


@pytest_twisted.ensureDeferred
async def test_a_backup_under_load_restores_everything_acknowledged(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    alice, bob = await server.logged_in("alice", "bob", acks=True)
    bob.close()
    stop, acknowledged = [], []
    load = defer.ensureDeferred(send_until(alice, stop, acknowledged))
    files = {}
    for number in range(3):
        content = f"file {number}".encode() * 1000
        files[await upload(server.root.files, "alice", f"f{number}.bin", content)] = content
    while len(acknowledged) < 20:
        await task.deferLater(reactor, 0.01, lambda: None)
    before = list(acknowledged)
    status, made = await ctl("backup", str(tmp_path / "backup"))  # the sender goes on meanwhile
    stop.append(True)
    await load
    assert status == OK and made["files"] == 3, made

    restored_settings, drop = restored(settings, tmp_path)
    try:
        restore = Ctl(restored_settings, tmp_path)
        status, result = await restore("restore", str(tmp_path / "backup"))
        assert status == OK and result["files"] == 3, result
        status, error = await restore("restore", str(tmp_path / "backup"))
        assert status == REFUSED and "empty" in error
        root = build_service(restored_settings, reactor)
        root.startService()
        await root.ready
        try:
            ids = await root.db.run(lambda txn: {row[0] for row in txn.execute("SELECT id FROM messages").fetchall()})
            assert set(before) <= ids
            for name, content in files.items():
                assert (restored_settings.data_dir / "files" / name).read_bytes() == content
                assert (await root.store.files.get(name))["size"] == len(content)
        finally:
            await root.stopService()
    finally:
        drop()


def restored(settings, tmp_path):
    """Settings for an empty data dir and an empty database of the same engine."""
    if settings.db_url.startswith("sqlite:"):
        url, drop = f"sqlite:{tmp_path / 'restored' / 'neochat.sqlite'}", lambda: None
    else:
        url, drop = _mysql_database()
    return dataclasses.replace(settings, db_url=url, data_dir=tmp_path / "restored"), drop


@pytest_twisted.ensureDeferred
async def test_backup_refuses_a_directory_in_use(server, settings, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    status, error = await Ctl(settings, tmp_path)("backup", str(tmp_path / "full"))
    assert status == REFUSED and "not empty" in error


@pytest_twisted.ensureDeferred
async def test_restore_refuses_a_running_server_and_the_other_engine(server, settings, tmp_path):
    ctl = Ctl(settings, tmp_path)
    assert (await ctl("backup", str(tmp_path / "backup")))[0] == OK
    status, error = await ctl("restore", str(tmp_path / "backup"))
    assert status == REFUSED and "the server is running: stop it before restoring" in error
    other = "mysql://nobody@127.0.0.1:1/none" if settings.db_url.startswith("sqlite:") else f"sqlite:{tmp_path}/x.sqlite"
    elsewhere = dataclasses.replace(settings, db_url=other, data_dir=tmp_path / "elsewhere")
    status, error = await Ctl(elsewhere, tmp_path)("restore", str(tmp_path / "backup"))
    assert status == REFUSED and "the backup is of a" in error
