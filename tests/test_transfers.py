"""Files end to end: the seed-000 in-band transfer on the message server, and
the seed-002 flow (upload, <file> reference, FTP download) with access control."""

import ftplib
import hashlib
import io
import os
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from tests.clients import BlockingJsonClient

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


def offer_header(sender, receiver, name, length):
    return {"message_type": "file", "send_user": sender, "rece_user": receiver,
            "file_name": name, "file_length": length}


def in_band_transfer(port, newline):
    a, b = BlockingJsonClient(port, newline), BlockingJsonClient(port)
    a.login("alice")
    b.login("bob")
    a.send(offer_header("alice", "bob", "photo.png", len(PAYLOAD)))
    for start in range(0, len(PAYLOAD), 256 * 1024):
        a.sock.sendall(PAYLOAD[start:start + 256 * 1024])
    offer = b.receive("file")
    assert (offer["send_user"], offer["file_name"], offer["file_length"]) == ("alice", "photo.png", len(PAYLOAD))
    b.send({"message_type": "file", "content": "accept", "file_name": "photo.png",
            "file_length": len(PAYLOAD), "send_user": "alice"})
    header = b.receive("file-data")
    assert (header["file_name"], header["file_length"], header["send_user"]) == ("photo.png", len(PAYLOAD), "alice")
    received = b.read_raw(header["file_length"])
    # The connection is still a JSON stream after the bytes.
    a.send({"message_type": "word", "chat_type": "private", "send_user": "alice",
            "rece_user": "bob", "content": "got it?"})
    assert b.receive("word")["content"] == "got it?"
    a.close()
    b.close()
    return hashlib.sha256(received).hexdigest()


@pytest.mark.parametrize("newline", [True, False], ids=["newline", "back-to-back"])
@pytest_twisted.inlineCallbacks
def test_in_band_file_arrives_byte_for_byte(server, newline):
    digest = yield threads.deferToThread(in_band_transfer, server.port, newline)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()


def offline_receiver_then_reject(port, wait_offline):
    a, b = BlockingJsonClient(port), BlockingJsonClient(port)
    a.login("alice")
    b.login("bob")
    b.send({"message_type": "leave_message", "username": "bob"})
    wait_offline("bob")  # alice may be told by a whole list instead, if her login replay ran then
    a.send(offer_header("alice", "bob", "notes.txt", 5))
    a.sock.sendall(b"hello")
    b.close()
    time.sleep(0.2)
    b = BlockingJsonClient(port)
    b.login("bob", register=False)
    offer = b.receive("file")
    assert (offer["file_name"], offer["file_length"]) == ("notes.txt", 5)
    b.send({"message_type": "reject", "file_name": "notes.txt"})
    rejected = a.receive("reject")
    assert (rejected["file_name"], rejected["rece_user"]) == ("notes.txt", "bob")
    b.send({"message_type": "file", "content": "accept", "file_name": "notes.txt",
            "file_length": 5, "send_user": "alice"})
    failure = b.receive("file")
    assert failure == {"message_type": "file", "content": "fail", "reason": "no such file"}
    a.close()
    b.close()
    return offer["file_id"]


@pytest_twisted.inlineCallbacks
def test_offline_receiver_is_told_at_login_and_reject_discards_the_file(server):
    def wait_offline(account):
        threads.blockingCallFromThread(reactor, server.offline, account)

    file_id = yield threads.deferToThread(offline_receiver_then_reject, server.port, wait_offline)
    assert not (server.root.files.directory / file_id).exists()


def sender_vanishes(port):
    a, b = BlockingJsonClient(port), BlockingJsonClient(port)
    a.login("alice")
    b.login("bob")
    a.send(offer_header("alice", "bob", "big.bin", 10 * 1024 * 1024))
    a.sock.sendall(PAYLOAD[:1024 * 1024])
    a.sock.close()
    # Bob keeps chatting with carol; no offer ever reaches him.
    c = BlockingJsonClient(port)
    c.login("carol")
    c.send({"message_type": "word", "chat_type": "private", "send_user": "carol", "rece_user": "bob", "content": "hi"})
    assert b.receive("word")["content"] == "hi"
    pending = b.buffer
    b.close()
    c.close()
    return pending


@pytest_twisted.inlineCallbacks
def test_sender_vanishing_mid_file_leaves_nothing(server):
    pending = yield threads.deferToThread(sender_vanishes, server.port)
    assert b'"message_type":"file"' not in pending
    files = server.root.files.directory
    assert [p.name for p in files.iterdir() if p.is_file()] == []
    assert list((files / ".partial").iterdir()) == []
    assert (yield server.root.store.files.owned("alice")) == []


def chat_during_transfer(port):
    a, b = BlockingJsonClient(port), BlockingJsonClient(port)
    a.login("alice")
    b.login("bob")
    c, d = BlockingJsonClient(port), BlockingJsonClient(port)
    c.login("carol")
    d.login("dave")
    a.send(offer_header("alice", "bob", "slow.bin", len(PAYLOAD)))
    delivered = 0
    for start in range(0, len(PAYLOAD), 512 * 1024):
        a.sock.sendall(PAYLOAD[start:start + 512 * 1024])
        c.send({"message_type": "word", "chat_type": "private", "send_user": "carol",
                "rece_user": "dave", "content": f"n{start}"})
        assert d.receive("word")["content"] == f"n{start}"
        delivered += 1
    assert b.receive("file")["file_length"] == len(PAYLOAD)
    for client in (a, b, c, d):
        client.close()
    return delivered


@pytest_twisted.inlineCallbacks
def test_other_users_chat_flows_during_a_transfer(server):
    delivered = yield threads.deferToThread(chat_during_transfer, server.port)
    assert delivered == 7


@pytest.mark.parametrize("offer,reason", [
    (offer_header("alice", "nobody", "x", 3), "unknown recipient"),
    (offer_header("mallory", "bob", "x", 3), "send_user is not the logged-in account"),
])
@pytest_twisted.inlineCallbacks
def test_refused_offer_still_consumes_its_bytes(server, offer, reason):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send(offer)
    alice.send_raw(b"abc")
    reply = yield alice.next("file")
    assert reply == {"message_type": "file", "content": "fail", "reason": reason}
    alice.send({"message_type": "word", "chat_type": "private", "send_user": "alice",
                "rece_user": "bob", "content": "still in sync"})
    message = yield bob.next("word")
    assert message["content"] == "still in sync"


# -- seed 002: FTP upload, <file> reference, FTP download ---------------------

def ftp(port, account):
    client = ftplib.FTP()
    client.connect("127.0.0.1", port, timeout=20)
    client.login(account, "secret")
    return client


def ftp_upload(port, account, name, data):
    with ftp(port, account) as client:
        reply = client.storbinary(f"STOR {name}", io.BytesIO(data))
    return reply.rsplit("file: ", 1)[1].strip()


def ftp_download(port, account, name):
    with ftp(port, account) as client:
        chunks = []
        client.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks)


@pytest.mark.parametrize("dialect", ["header", "json"])
@pytest_twisted.inlineCallbacks
def test_file_reference_lets_only_the_recipient_download(server, dialect):
    ftp_port = server.root.ftp_service.address[1]
    a, b, c = yield server.logged_in("+86101", "+8200001", "+8300001", dialect=dialect)
    name = yield threads.deferToThread(ftp_upload, ftp_port, "+86101", "a.png", PAYLOAD[:100000])
    assert name.startswith("%2B86101_") and name.endswith("_a.png")
    text = f"你好 <file>{name}</file>"
    if dialect == "header":
        reply = yield a.request({"user_account": "+86101", "message_type": "text", "text": text, "friends": "+8200001"})
        assert reply["stat"] == "200"
        message = yield b.next("text")
        assert message["text"] == text
    else:
        a.send({"message_type": "word", "chat_type": "private", "send_user": "+86101",
                "rece_user": "+8200001", "content": text})
        message = yield b.next("word")
    data = yield threads.deferToThread(ftp_download, ftp_port, "+8200001", name)
    assert data == PAYLOAD[:100000]
    with pytest.raises(ftplib.error_perm, match="550"):
        yield threads.deferToThread(ftp_download, ftp_port, "+8300001", name)


@pytest_twisted.inlineCallbacks
def test_group_file_reference_lets_members_download(server):
    ftp_port = server.root.ftp_service.address[1]
    owner, member, outsider = yield server.logged_in("owner", "member", "outsider", dialect="header")
    yield owner.op("group_create", group_id="team")
    yield member.op("group_join", group_id="team")
    name = yield threads.deferToThread(ftp_upload, ftp_port, "owner", "plan.pdf", b"%PDF-1.4 plan")
    yield owner.request({"user_account": "owner", "message_type": "text", "group_id": "team",
                         "text": f"see <file>{name}</file>"})
    yield member.next("text")
    assert (yield threads.deferToThread(ftp_download, ftp_port, "member", name)) == b"%PDF-1.4 plan"
    with pytest.raises(ftplib.error_perm, match="550"):
        yield threads.deferToThread(ftp_download, ftp_port, "outsider", name)


@defer.inlineCallbacks
def upload_reply(client):
    """The next reply to an upload: it has a task_id and no message_type."""
    while "task_id" not in (reply := (yield client.next(None))):
        pass
    return reply


@pytest_twisted.inlineCallbacks
def test_seed_002_upload_exchange_on_the_message_server(server):
    ftp_port = server.root.ftp_service.address[1]
    a, = yield server.logged_in("+86101", dialect="header")
    a.send({"task_id": "1", "user_account": "+86101", "time": "10012312312311"}, PAYLOAD)
    reply = yield upload_reply(a)
    assert (reply["task_id"], reply["stat"]) == ("1", "200")
    assert reply["file"].startswith("%2B86101_") and reply["file"].endswith("_file")
    data = yield threads.deferToThread(ftp_download, ftp_port, "+86101", reply["file"])
    assert hashlib.sha256(data).digest() == hashlib.sha256(PAYLOAD).digest()
    a.send({"task_id": "2", "user_account": "someone-else", "time": "1"}, b"x")
    reply = yield upload_reply(a)
    assert (reply["task_id"], reply["stat"], reply["reason"]) == ("2", "403", "user_account is not the logged-in account")


@pytest_twisted.inlineCallbacks
def test_header_receiver_gets_an_in_band_offer_and_downloads_it_over_ftp(server):
    ftp_port = server.root.ftp_service.address[1]
    sender, = yield server.logged_in("sender")
    receiver, = yield server.logged_in("receiver", dialect="header")
    sender.send(offer_header("sender", "receiver", "song.mp3", 4))
    sender.send_raw(b"\x01\x02\x03\x04")
    offer = yield receiver.next("file")
    assert (offer["user_account"], offer["file_name"], offer["file_length"]) == ("sender", "song.mp3", "4")
    data = yield threads.deferToThread(ftp_download, ftp_port, "receiver", offer["file"])
    assert data == b"\x01\x02\x03\x04"
