"""The delivery pipeline through real sockets, on SQLite and MariaDB: group
commit, exactly-once with client ids, order per conversation, flow control
through the store (memory bounded for clients that do not read)."""

import ctypes
import socket
from dataclasses import replace

import psutil
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from neochat.services.limits import Limits
from neochat.wire.headers import encode_message
from tests.clients import BlockingJsonClient

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def flat_out(settings):
    """The senders here are load generators: no per-connection rates."""
    settings.limits = replace(Limits(), messages_per_second=0, bytes_per_second=0)


def word(sender, to, content, **extra):
    return {"message_type": "word", "chat_type": "private", "send_user": sender, "rece_user": to,
            "content": content, **extra}


def rss():
    """Resident memory of this process (server and clients), after handing
    freed heap back to the system: what is held, not what the allocator
    keeps cached from transient peaks."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss


class NonReader(BlockingJsonClient):
    """A JSON client on a blocking socket that logs in and then reads nothing
    until told to."""

    def __init__(self, port, name, acks=False):
        super().__init__(port, newline=True)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.name = name
        self.acks = acks

    def log_in(self):
        self.send({"message_type": "register", "username": self.name, "password": "secret"})
        assert self.receive("register")["content"] == "success"
        self.send({"message_type": "login", "username": self.name, "password": "secret", "acks": self.acks})
        assert self.receive("login")["content"] == "success"

    def contents(self, count):
        return [self.receive("word")["content"] for _ in range(count)]

    def dropped(self):
        """True once the server has closed the connection."""
        try:
            self.receive("no such message")
        except (AssertionError, ConnectionResetError):
            return True


@defer.inlineCallbacks
def send_all(client, sender, to, contents, window=50):
    """Send with acks-style receipts, ``window`` in flight; the receipts."""
    receipts = []
    for start in range(0, len(contents), window):
        for content in contents[start:start + window]:
            client.send(word(sender, to, content, client_id=content[:60]))
        for _ in contents[start:start + window]:
            receipt = yield client.next("word", reply=True)
            assert receipt["content"] == "success", receipt
            receipts.append(receipt)
    return receipts


def numbered(count, size):
    return [f"{n:08d}".ljust(size, "x") for n in range(count)]


@pytest_twisted.inlineCallbacks
def test_a_non_reader_receiving_200_mib_grows_the_server_little_and_loses_nothing(server, monkeypatch):
    # Memory, not the deadline (the next test): sending 200 MiB through a busy
    # MariaDB may take longer than the default 60 s behind.
    server.chat.behind_deadline = 600
    read_back = [0]
    pending = server.chat.store.messages.pending

    def counted_pending(*args):
        return pending(*args).addCallback(lambda rows: read_back.__setitem__(0, read_back[0] + len(rows)) or rows)

    monkeypatch.setattr(server.chat.store.messages, "pending", counted_pending)
    sender, = yield server.logged_in("sender", acks=True)
    reader = NonReader(server.port, "sleepy")
    yield threads.deferToThread(reader.log_in)
    contents = numbered(200 * MIB // 60000, 60000)
    # Warm up until every pool connection has sent full batches: MySQLdb keeps
    # a buffer per connection as large as its largest statement (at most
    # store/batch.py's MAX_BATCH_TEXT), a fixed cost whatever the non-reader.
    yield send_all(sender, "sender", "sleepy", contents[:500])
    before = rss()
    yield send_all(sender, "sender", "sleepy", contents[500:])
    grown = rss() - before
    assert grown < 8 * MIB, f"server grew by {grown / MIB:.1f} MiB"
    got = yield threads.deferToThread(reader.contents, len(contents))
    assert [c[:8] for c in got] == [c[:8] for c in contents]
    # Each time the reader drains, the replay reads back little more than it
    # can write before the reader is behind again (not a 500-message page).
    assert read_back[0] < 3 * len(contents), f"{read_back[0]} rows read back for {len(contents)} messages"


@pytest_twisted.inlineCallbacks
def test_a_client_behind_past_the_deadline_is_dropped_and_loses_nothing(server):
    server.chat.behind_deadline = 0.5
    sender, = yield server.logged_in("sender", acks=True)
    # What the kernel took before the client was dropped counts as delivered
    # for a client that does not acknowledge: this one does.
    reader = NonReader(server.port, "sleepy", acks=True)
    yield threads.deferToThread(reader.log_in)
    contents = numbered(200, 30000)
    yield send_all(sender, "sender", "sleepy", contents)
    yield task.deferLater(reactor, 1.0, lambda: None)
    assert not server.root.router.is_online("sleepy")
    assert (yield threads.deferToThread(reader.dropped))
    again, = yield server.logged_in("sleepy-again")  # (another account logs in meanwhile)
    client = yield server.client()
    yield client.request({"message_type": "login", "username": "sleepy", "password": "secret", "acks": True})
    got = []
    for _ in contents:
        got.append((yield client.next("word"))["content"])
    assert [c[:8] for c in got] == [c[:8] for c in contents]
    yield again.close()


@pytest_twisted.inlineCallbacks
def test_a_resend_with_the_same_client_id_is_stored_and_delivered_once(server, dialect):
    alice, bob, carol = yield server.logged_in("alice", "bob", "carol", dialect=dialect)
    if dialect == "json":
        def send(to, text, client_id):
            return alice.request(word("alice", to, text, client_id=client_id, acks=True))
        yield alice.close()
        alice = yield server.client()
        yield alice.request({"message_type": "login", "username": "alice", "password": "secret", "acks": True})
        kind, text_of = "word", (lambda m: m["content"])
    else:
        def send(to, text, client_id):
            return alice.request({"message_type": "text", "user_account": "alice", "friends": to,
                                  "text": text, "client_id": client_id})
        kind, text_of = "text", (lambda m: m["text"])
    first = yield send("bob", "once", "c-1")
    again = yield send("bob", "once", "c-1")
    assert again["id"] == first["id"]
    reused = yield send("carol", "other", "c-1")
    assert reused.get("reason") == "client_id reused" and reused.get("stat", "409") == "409"
    changed = yield send("bob", "changed", "c-1")
    assert changed.get("reason") == "client_id reused"
    yield send("bob", "after", "c-2")
    assert text_of((yield bob.next(kind))) == "once"
    assert text_of((yield bob.next(kind))) == "after"
    yield send("carol", "to carol", "c-3")
    assert text_of((yield carol.next(kind))) == "to carol"  # nothing misdelivered before it


@pytest_twisted.inlineCallbacks
def test_a_batch_in_flight_when_the_sender_dies_is_stored_once_and_resent_exactly_once(server, dialect):
    sender, = yield server.logged_in("sender", dialect="header")
    yield server.logged_in("receiver", dialect=dialect)
    total = 200
    frames = b"".join(
        encode_message({"message_type": "text", "user_account": "sender", "friends": "receiver",
                        "text": f"n{n}", "client_id": f"c{n}"})
        for n in range(total))
    sender.send_raw(frames)
    sender.transport.abortConnection()  # while the batch is being committed
    yield sender.closed
    yield task.deferLater(reactor, 0.2, lambda: None)
    sender = yield server.client("header")
    yield sender.request({"message_type": "login", "user_account": "sender", "user_password": "secret"})
    for n in range(total):  # the client does not know what got through: resend all
        sender.send({"message_type": "text", "user_account": "sender", "friends": "receiver",
                     "text": f"n{n}", "client_id": f"c{n}"})
    ids = []
    for n in range(total):
        reply = yield sender.next("text", reply=True)
        assert reply["stat"] == "200"
        ids.append(int(reply["id"]))
    assert ids == sorted(ids) and len(set(ids)) == total
    receiver = server.clients[1]
    kind = "word" if dialect == "json" else "text"
    got = []
    for _ in range(total):
        message = yield receiver.next(kind)
        got.append(message.get("content", message.get("text")))
    assert got == [f"n{n}" for n in range(total)]
    yield task.deferLater(reactor, 0.2, lambda: None)
    assert not receiver.of_type(kind)  # exactly once


@pytest_twisted.inlineCallbacks
def test_many_senders_at_once_keep_each_conversation_in_order(server):
    pairs = 8
    senders = yield server.logged_in(*[f"s{n}" for n in range(pairs)])
    receivers = yield server.logged_in(*[f"r{n}" for n in range(pairs)])
    yield senders[0].op("group_create", group_id="room")
    for n in range(1, pairs):
        ok, _ = yield senders[n].op("group_join", group_id="room")
        assert ok
    count = 100
    for n, sender in enumerate(senders):
        for i in range(count):
            sender.send(word(f"s{n}", f"r{n}", f"{i}"))
            sender.send({"message_type": "word", "chat_type": "normal", "send_user": f"s{n}",
                         "rece_user": "room", "content": f"{n}:{i}"})
    for n, receiver in enumerate(receivers):
        got = []
        for _ in range(count):
            got.append(int((yield receiver.next("word"))["content"]))
        assert got == list(range(count))
    seen = {}
    watcher = senders[0]
    for _ in range((pairs - 1) * count):
        message = yield watcher.next("word")
        author, i = message["content"].split(":")
        seen.setdefault(author, []).append(int(i))
    assert all(sequence == list(range(count)) for sequence in seen.values()) and len(seen) == pairs - 1


@pytest_twisted.inlineCallbacks
def test_sends_waiting_for_their_checks_keep_the_connection_order(server):
    """A send with a <file> reference (its grant is looked up first) or, on a
    friends-only server, any private send waits for its checks: the sends
    behind it wait their turn, and one refused there holds none of them up."""
    alice, = yield server.logged_in("alice", acks=True)
    bob, carol = yield server.logged_in("bob", "carol")
    count = 30
    for i in range(count):
        alice.send(word("alice", "bob", f"{i} <file>alice_{i}_a.png</file>" if i % 3 else f"{i}"))
    ids, got = [], []
    for _ in range(count):
        ids.append((yield alice.next("word", reply=True))["id"])
        got.append(int((yield bob.next("word"))["content"].split()[0]))
    assert got == list(range(count)) and ids == sorted(ids)
    server.chat.friends_only = True
    yield alice.op("friend_request", friend="bob")
    yield bob.op("friend_accept", friend="alice")
    for to, text in (("bob", "first"), ("carol", "refused"), ("bob", "second")):
        alice.send(word("alice", to, text))
    replies = []
    for _ in range(3):
        replies.append((yield alice.next("word", reply=True)))
    assert [reply["content"] for reply in replies] == ["success", "fail", "success"]
    assert replies[1]["reason"] == "not a friend"
    assert (yield bob.next("word"))["content"] == "first"
    assert (yield bob.next("word"))["content"] == "second"
    assert not carol.of_type("word")


@pytest_twisted.inlineCallbacks
def test_a_trickle_of_messages_costs_one_transaction_each_and_leaves_no_queue(server):
    """The deletes of delivered messages ride with the next message's
    transaction (or go within 50 ms), not one transaction each."""
    alice, bob = yield server.logged_in("alice", "bob")
    writes = server.root.db.latency["write"]
    before = sum(writes.counts)
    for n in range(20):
        alice.send(word("alice", "bob", f"m{n}"))
        assert (yield bob.next("word"))["content"] == f"m{n}"
    assert sum(writes.counts) - before <= 22
    yield task.deferLater(reactor, 0.2, lambda: None)
    assert (yield server.root.store.messages.pending("bob", 0, 100)) == []
