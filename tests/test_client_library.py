"""The client library against a real server on port 0 (SQLite and MariaDB):
chat, catch-up, reconnects that lose and double nothing, files both ways."""

import hashlib
import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from neochat.client.connection import RequestFailed
from neochat.client.ftp import file_references
from neochat.client import library
from neochat.client.library import ClientStopped, NeoChatClient, register
from tests.client_helpers import Collector, library_client
from tests.udp import wait_for


def pause(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_two_clients_chat_privately_and_in_a_group_with_history_and_profiles(server):
    alice = await library_client(server, "alice")
    bob = await library_client(server, "bob")
    words = Collector(bob, "word")
    receipt = await alice.send_message("bob", "你好 👋")
    assert set(receipt) == {"id", "time", "client_id"}
    message = await words.next()
    assert (message["send_user"], message["content"], message["id"]) == ("alice", "你好 👋", receipt["id"])
    assert [m["content"] for m in bob.get_message() if m["message_type"] == "word"] == ["你好 👋"]
    assert bob.get_message() == []  # the poll clears the inbox

    await alice.group("create", "dev", introduction="we build")
    await bob.group("join", "dev")
    await alice.send_message("dev", "group hello", group=True)
    assert (await words.next())["content"] == "group hello"
    assert [m["content"] for m in await bob.get_old_message("dev", 5, group=True)] == ["group hello"]
    assert [m["content"] for m in await bob.get_old_message("alice", 5)] == ["你好 👋"]
    assert await bob.group_list() == [{"group_id": "dev", "permissions": "member"}]

    await alice.set_user_info(user_name="Alice A")
    assert (await bob.get_user_info("alice"))["user_name"] == "Alice A"
    assert (await alice.get_current_user())["user_account"] == "alice"
    assert bob.online == {"alice", "bob"}

    requests = Collector(bob, "friend_request")
    await alice.friend("request", "bob")
    assert (await requests.next())["friend"] == "alice"
    await bob.friend("accept", "alice")
    assert (await alice.friend_list())["friends"] == ["bob"]
    with pytest.raises(RequestFailed, match="unknown account"):
        await alice.get_user_info("nobody")


@pytest_twisted.ensureDeferred
async def test_messages_sent_while_the_receiver_was_away_arrive_at_login(server):
    alice = await library_client(server, "alice")
    await library_client(server, "bob")
    await server.clients.pop().stop()
    for number in range(3):
        await alice.send_message("bob", f"m{number}")
    bob = await library_client(server, "bob", fresh=False)
    await wait_for(lambda: len(bob._inbox) == 3)
    assert [m["content"] for m in bob.get_message()] == ["m0", "m1", "m2"]


@pytest_twisted.ensureDeferred
async def test_killed_connections_lose_and_double_nothing(server):
    alice = await library_client(server, "alice")
    bob = await library_client(server, "bob")
    received, states = [], []
    bob.subscribe(lambda message: message.get("message_type") == "word" and received.append(message["content"]))
    bob.watch_connection(states.append)
    sent = [f"message {number}" for number in range(40)]
    receipts = []
    for number, content in enumerate(sent):
        receipts.append(alice.send_message("bob", content))
        if number % 10 == 5:  # mid-stream: cut both sides without a goodbye
            await wait_for(lambda: alice._connection and bob._connection)
            alice._connection.transport.abortConnection()
            await pause(0.01)
            bob._connection.transport.abortConnection()
            await wait_for(lambda: bob._connection is None)
    await wait_for(lambda: bob._connection is not None)
    bob._connection.transport.abortConnection()
    await wait_for(lambda: bob._connection is None)
    profile = bob.get_current_user()  # asked while cut off: waits for the next login
    results = await defer.gatherResults(receipts)
    assert (await profile)["user_account"] == "bob"
    assert len({result["id"] for result in results}) == len(sent)
    await wait_for(lambda: len(received) >= len(sent))
    await pause(0.2)  # anything doubled would have arrived by now
    assert sorted(received) == sorted(sent)
    assert alice.outbox_size == 0
    assert states == ["reconnecting", "connected"] * 5


@pytest_twisted.ensureDeferred
async def test_a_file_goes_both_ways_in_band_with_progress(server, tmp_path):
    alice = await library_client(server, "alice")
    bob = await library_client(server, "bob")
    for sender, receiver, size in ((alice, bob, 1024 * 1024 + 3), (bob, alice, 0)):
        payload = os.urandom(size)
        source = tmp_path / f"from-{sender.account}.bin"
        source.write_bytes(payload)
        offers = Collector(receiver, "file")
        sent_progress, received_progress = [], []
        receipt = await sender.send_file(receiver.account, str(source), lambda done, total: sent_progress.append(done))
        assert receipt["file_length"] == size
        offer = await offers.next()
        assert (offer["send_user"], offer["file_name"], offer["file_length"]) == (sender.account, source.name, size)
        target = tmp_path / f"to-{receiver.account}.bin"
        path = await receiver.accept_file(offer, str(target), lambda done, total: received_progress.append(done))
        assert hashlib.sha256(open(path, "rb").read()).digest() == hashlib.sha256(payload).digest()
        if size:
            assert sent_progress[-1] == received_progress[-1] == size
    # Two at once go one after the other.
    offers = Collector(bob, "file")
    both = [alice.send_file("bob", str(tmp_path / "from-alice.bin")), alice.send_file("bob", str(tmp_path / "from-bob.bin"))]
    assert [receipt["file_length"] for receipt in await defer.gatherResults(both)] == [1024 * 1024 + 3, 0]
    assert [(await offers.next())["file_name"] for _ in both] == ["from-alice.bin", "from-bob.bin"]
    # The stream is still in step after the raw bytes.
    words = Collector(bob, "word")
    await alice.send_message("bob", "after the files")
    assert (await words.next())["content"] == "after the files"


@pytest_twisted.ensureDeferred
async def test_a_rejected_offer_tells_the_sender(server, tmp_path):
    alice = await library_client(server, "alice")
    bob = await library_client(server, "bob")
    source = tmp_path / "notes.txt"
    source.write_bytes(b"hello")
    offers, rejects = Collector(bob, "file"), Collector(alice, "reject")
    await alice.send_file("bob", str(source))
    await bob.reject_file(await offers.next())
    assert (await rejects.next())["rece_user"] == "bob"
    with pytest.raises(RequestFailed, match="no such file"):
        await bob.accept_file({"file_name": "notes.txt", "file_length": 5, "send_user": "alice",
                               "file_id": "gone"}, str(tmp_path / "x"))
    assert not (tmp_path / "x.part").exists()


@pytest_twisted.ensureDeferred
async def test_a_wrong_password_stops_the_client_and_a_newer_login_kicks_it(server):
    await library_client(server, "alice")
    refused = NeoChatClient(reactor, "127.0.0.1", server.port, "alice", "wrong", retry=lambda attempt: 0.05)
    with pytest.raises(RequestFailed, match="wrong account or password"):
        await refused.start()
    first = server.clients[0]
    await library_client(server, "alice", fresh=False)
    await wait_for(lambda: first._stopped is not None)
    with pytest.raises(ClientStopped, match="kicked"):
        await first.send_message("bob", "too late")


@pytest_twisted.ensureDeferred
async def test_lobby_messages_said_while_a_client_reconnected_are_caught_up(server):
    alice = await library_client(server, "alice")
    delay = {"seconds": 0.05}
    bob = await library_client(server, "bob", retry=lambda attempt: delay["seconds"])
    lobby = Collector(bob, "word")
    await alice.send_message(None, "before")
    assert (await lobby.next())["content"] == "before"
    delay["seconds"] = 0.5  # away long enough for the server to notice
    left = Collector(alice, "leave_message")
    bob._connection.transport.abortConnection()
    assert (await left.next())["username"] == "bob"
    await alice.send_message(None, "while bob was away")
    assert (await lobby.next())["content"] == "while bob was away"
    await alice.send_message(None, "after")
    assert (await lobby.next())["content"] == "after"


@pytest_twisted.ensureDeferred
async def test_a_file_shared_over_ftp_downloads_and_resumes_with_rest(server, tmp_path):
    ftp_port = server.root.ftp_service.address[1]
    alice = await library_client(server, "alice", ftp_port=ftp_port)
    bob = await library_client(server, "bob", ftp_port=ftp_port)
    words = Collector(bob, "word")
    payload = os.urandom(300 * 1024 + 5)
    source = tmp_path / "report.pdf"
    source.write_bytes(payload)
    uploaded = []
    name, _ = await alice.share_file("bob", str(source), "the report", progress=lambda done, total: uploaded.append(done))
    assert uploaded[-1] == len(payload) and name.startswith("alice_") and name.endswith("_report.pdf")
    message = await words.next()
    assert file_references(message["content"]) == [name]

    target = tmp_path / "copy.pdf"
    (tmp_path / "copy.pdf.part").write_bytes(payload[:100_000])  # an earlier download broke off
    downloaded = []
    await bob.ftp.download(name, str(target), lambda done, total: downloaded.append(done))
    assert target.read_bytes() == payload
    assert downloaded[0] > 100_000 and downloaded[-1] == len(payload)  # resumed, not restarted
    assert not (tmp_path / "copy.pdf.part").exists()
    stranger = await library_client(server, "carol", ftp_port=ftp_port)
    with pytest.raises(Exception, match="550"):
        await stranger.ftp.download(name, str(tmp_path / "stolen"))


@pytest_twisted.ensureDeferred
async def test_the_outbox_and_the_inbox_are_bounded(server, monkeypatch):
    monkeypatch.setattr(library, "OUTBOX_LIMIT", 3)
    monkeypatch.setattr(library, "INBOX_LIMIT", 2)
    await library_client(server, "bob")
    await register(reactor, "127.0.0.1", server.port, "alice", "secret")
    alice = NeoChatClient(reactor, "127.0.0.1", server.port, "alice", "secret")
    server.clients.append(alice)
    alice.close = alice.stop
    receipts = [alice.send_message("bob", f"m{number}") for number in range(3)]  # not connected yet
    with pytest.raises(library.LimitReached):
        await alice.send_message("bob", "one too many")
    await alice.start()
    await defer.gatherResults(receipts)
    bob = server.clients[0]
    await wait_for(lambda: len(bob._seen) == 3)
    assert [m["content"] for m in bob.get_message()] == ["m1", "m2"]  # the newest two
