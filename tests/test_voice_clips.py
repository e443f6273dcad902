"""Header-dialect voice clips through the voice spool, over real sockets, on
SQLite and MariaDB: checked from their header lines before the body is
read, spooled to disk, streamed to the recipient, and deleted after."""

import base64
import os
import socket
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import threads

from neochat.chat.clips import VoiceSpool
from neochat.wire.headers import encode_head
from tests.test_header_dialect import read_message, read_until
from tests.udp import wait_for

MIB = 1024 * 1024


@pytest.fixture
def settings(settings):
    """Spool limits set as an operator would (--limit): three 4 MiB clips are too many."""
    settings.limits = replace(settings.limits, voice_spool_per_sender=10 * MIB, voice_spool_total=100 * MIB)
    return settings


def voice(sender, friend):
    return {"message_type": "voice", "user_account": sender, "friends": friend}


def spooled(server):
    return sorted(path.name for path in server.chat.clips.directory.iterdir())


def until(condition):
    return wait_for(condition, seconds=10)


@pytest_twisted.ensureDeferred
async def test_a_clip_reaches_a_reading_friend_intact_and_leaves_no_file(server):
    a, = await server.logged_in("a", dialect="header")
    receiver, buffer = await threads.deferToThread(logged_in_socket, server.port, "b")
    clip = os.urandom(3 * MIB + 7)
    reply = await a.request(voice("a", "b"), clip)
    assert reply["stat"] == "200"
    # On the wire as before the spool: header lines, content-length, the bytes.
    expected = encode_head({"message_type": "voice", "user_account": "a"}, len(clip)) + clip
    assert await threads.deferToThread(read_exactly, receiver, buffer, expected) == expected
    await until(lambda: not spooled(server))
    assert server.chat.clips.used == 0
    receiver.close()


@pytest_twisted.ensureDeferred
async def test_clips_and_texts_sent_back_to_back_arrive_whole_and_in_order(server, dialect):
    a, = await server.logged_in("a", dialect="header")
    b, = await server.logged_in("b", dialect=dialect)
    clips = [os.urandom(MIB + n) for n in range(3)]
    a.send(voice("a", "b"), clips[0])
    a.send({"message_type": "text", "user_account": "a", "friends": "b", "text": "between"})
    a.send(voice("a", "b"), clips[1])
    replies = [await a.next("voice", reply=True), await a.next("text", reply=True)]
    replies.append(await a.request(voice("a", "b"), clips[2]))
    assert [reply["stat"] for reply in replies] == ["200", "200", "200"]
    kinds = ("voice", "text", "word")  # a text reaches the JSON dialect as a word

    def arrived():
        return [message for message in b.received if message.get("message_type") in kinds]

    await until(lambda: len(arrived()) == 4)
    assert [message["message_type"] for message in arrived()] == ["voice", kinds[1 + (dialect == "json")],
                                                                 "voice", "voice"]
    bodies = [message["body"] for message in arrived() if message["message_type"] == "voice"]
    assert [base64.b64decode(body) if dialect == "json" else body for body in bodies] == clips
    await until(lambda: not spooled(server))


def friends_only(server):
    server.chat.friends_only = True


def spool_of_one_mib(server):
    server.chat.clips.per_sender = MIB


def total_spool_of_one_mib(server):
    server.chat.clips.total = MIB


@pytest.mark.parametrize("setup, friend, stat, reason", [
    (friends_only, "b", "403", "not a friend"),
    (None, "nobody", "480", "friend offline"),
    (spool_of_one_mib, "b", "503", "too many of your voice clips waiting for delivery"),
    (total_spool_of_one_mib, "b", "503", "voice spool full"),
])
@pytest_twisted.ensureDeferred
async def test_a_refused_clip_is_answered_before_its_body_and_the_stream_stays_in_step(
        server, setup, friend, stat, reason):
    if setup is not None:
        setup(server)
    a, b = await server.logged_in("a", "b", dialect="header")
    body = b"\x07" * (2 * MIB)
    # Only the header lines: the answer comes before a byte of the body.
    a.send_raw(encode_head(voice("a", friend), len(body)))
    reply = await a.next("voice", reply=True)
    assert (reply["stat"], reply["reason"]) == (stat, reason)
    assert not spooled(server)
    a.send_raw(body)  # skipped, never spooled
    a.send({"message_type": "ping"})
    assert (await a.next("pong"))["stat"] == "200"
    assert b.of_type("voice") == [] and not spooled(server) and server.chat.clips.used == 0


@pytest_twisted.ensureDeferred
async def test_a_clip_over_the_size_limit_is_refused_before_its_body_and_the_connection_closed(server):
    a, b = await server.logged_in("a", "b", dialect="header")
    a.send_raw(encode_head(voice("a", "b"), 16 * MIB + 1))
    reply = await a.next("voice", reply=True)
    assert (reply["stat"], reply["reason"]) == ("413", "body too large")
    await a.closed
    assert not spooled(server)
    b.send({"message_type": "ping"})
    assert (await b.next("pong"))["stat"] == "200"


@pytest_twisted.ensureDeferred
async def test_clips_to_a_friend_that_does_not_read_wait_on_disk_up_to_the_limit_and_go_with_it(server, settings):
    assert server.chat.clips.directory == settings.data_dir / "voice-spool"
    a, c = await server.logged_in("a", "c", dialect="header")
    sleeper, _ = await threads.deferToThread(logged_in_socket, server.port, "sleepy")
    clip = b"\x05" * (4 * MIB)
    # One is being written to the sleeper, one waits its turn, on disk.
    for _ in range(2):
        assert (await a.request(voice("a", "sleepy"), clip))["stat"] == "200"
    assert len(spooled(server)) == 2
    a.send_raw(encode_head(voice("a", "sleepy"), len(clip)))
    reply = await a.next("voice", reply=True)
    assert (reply["stat"], reply["reason"]) == ("503", "too many of your voice clips waiting for delivery")
    a.send_raw(clip)
    # Others' clips and the sender's texts still go through.
    assert (await c.request(voice("c", "a"), b"\x06" * MIB))["stat"] == "200"
    assert (await a.next("voice"))["body"] == b"\x06" * MIB
    assert (await a.request({"message_type": "text", "user_account": "a", "friends": "c", "text": "hi"}))["stat"] == "200"
    sleeper.close()
    await server.offline("sleepy")
    await until(lambda: not spooled(server))
    assert server.chat.clips.used == 0


@pytest_twisted.ensureDeferred
async def test_a_clip_cut_off_by_its_sender_is_deleted(server):
    a, b = await server.logged_in("a", "b", dialect="header")
    a.send_raw(encode_head(voice("a", "b"), MIB) + b"\x01" * 1000)
    await until(lambda: len(spooled(server)) == 1)
    a.close()
    await until(lambda: not spooled(server))
    assert server.chat.clips.used == 0 and b.of_type("voice") == []


def test_clips_left_by_a_crash_are_deleted_at_start(tmp_path):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "tmp1234.clip").write_bytes(b"old")
    spool = VoiceSpool(tmp_path / "spool", per_sender=10, total=10)
    assert list(spool.directory.iterdir()) == []


# -- blocking helpers ---------------------------------------------------------

def logged_in_socket(port, account):
    """A header-dialect account on a blocking socket with a small receive buffer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    buffer = [b""]
    sock.sendall(f"message_type: registered\nuser_account: {account}\nuser_password: pw\n\n".encode())
    assert read_message(sock, buffer) == "message_type: registered\nstat: 200\n\n"
    sock.sendall(f"message_type: login\nuser_account: {account}\nuser_password: pw\n\n".encode())
    assert read_until(sock, buffer, "message_type: login") == "message_type: login\nstat: 200\n\n"
    return sock, buffer


def read_exactly(sock, buffer, expected):
    """The bytes from the start of ``expected`` on (pushed presence skipped), as many."""
    data = buffer[0]
    while True:
        start = data.find(expected[:40])
        if start >= 0 and len(data) - start >= len(expected):
            return data[start:start + len(expected)]
        chunk = sock.recv(1 << 20)
        assert chunk, "server closed the connection"
        data += chunk
