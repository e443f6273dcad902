"""``kill -9`` of a real server process while group commits are in flight:
every message whose sender got a receipt is delivered after the restart,
once and in order.  SQLite and MariaDB."""

import json
import signal
import sys
from pathlib import Path

from tests.clients import BlockingJsonClient

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from server import neochat  # noqa: E402  (bench/server.py: twistd in a subprocess)

TOTAL = 3000


def log_in(port, name, register):
    client = BlockingJsonClient(port, newline=True)
    if register:
        client.send({"message_type": "register", "username": name, "password": "pw"})
        assert client.receive("register")["content"] == "success"
    client.send({"message_type": "login", "username": name, "password": "pw", "acks": True})
    assert client.receive("login")["content"] == "success"
    return client


def word(n):
    return {"message_type": "word", "chat_type": "private", "send_user": "sender", "rece_user": "receiver",
            "content": f"m{n}", "client_id": f"c{n}"}


def receipts_until_killed(sender, server):
    """Send everything at once; kill the server after a few hundred receipts."""
    sender.sock.sendall(b"".join(
        (json.dumps(word(n)) + "\n").encode() for n in range(TOTAL)))
    acknowledged = []
    try:
        while len(acknowledged) < TOTAL:
            receipt = sender.receive("word")
            acknowledged.append(receipt["client_id"])
            if len(acknowledged) == 300:
                server.send_signal(signal.SIGKILL)
    except (AssertionError, ConnectionError, OSError):
        pass  # the server died
    return acknowledged


def test_a_server_killed_during_group_commits_loses_nothing_acknowledged(db_url, tmp_path):
    db = db_url if db_url.startswith("mysql") else f"sqlite:{tmp_path / 'kill.sqlite'}"
    with neochat("--db", db) as (port, server):
        log_in(port, "receiver", register=True).close()
        sender = log_in(port, "sender", register=True)
        acknowledged = receipts_until_killed(sender, server)
        server.wait(10)
    assert 300 <= len(acknowledged) < TOTAL, len(acknowledged)

    with neochat("--db", db) as (port, server):
        sender = log_in(port, "sender", register=False)
        sender.send({**word("end"), "content": "end", "client_id": "end"})
        sender.receive("word")
        receiver = log_in(port, "receiver", register=False)
        got = []
        while True:
            message = receiver.receive("word")
            if message["content"] == "end":
                break
            got.append(message)
    contents = [m["content"] for m in got]
    assert len(set(contents)) == len(contents), "delivered twice"
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)
    assert contents == [f"m{n}" for n in range(len(contents))], "out of order or a gap"
    assert set(f"c{n}" for n in range(len(contents))) >= set(acknowledged)
