"""The seed-000 JSON dialect over real sockets, on SQLite and MariaDB."""

import pytest
import pytest_twisted
from twisted.internet import defer

from neochat.services.root import build_service
from tests.clients import JsonClient


def word(sender, receiver, content, chat_type="private", **extra):
    return {"message_type": "word", "chat_type": chat_type, "send_user": sender,
            "rece_user": receiver, "content": content, **extra}


@defer.inlineCallbacks
def logged_in(server, *names, **extra):
    clients = []
    for name in names:
        client = yield server.client()
        yield client.register_and_login(name, **extra)
        clients.append(client)
    return clients


@pytest_twisted.inlineCallbacks
def test_login_pushes_full_online_list_to_everyone(server):
    alice, = yield logged_in(server, "alice")
    online = yield alice.next("update_online_user")
    assert online == {"message_type": "update_online_user", "online_user": ["alice"]}
    bob, = yield logged_in(server, "bob")
    for client in (alice, bob):
        online = yield client.next("update_online_user")
        assert online["online_user"] == ["alice", "bob"]


@pytest_twisted.inlineCallbacks
def test_private_message_reaches_only_the_recipient(server):
    alice, bob, carol = yield logged_in(server, "alice", "bob", "carol")
    alice.send(word("alice", "bob", "hi bob"))
    message = yield bob.next("word")
    assert {k: message[k] for k in ("chat_type", "send_user", "rece_user", "content")} == {
        "chat_type": "private", "send_user": "alice", "rece_user": "bob", "content": "hi bob"}
    assert isinstance(message["id"], int) and isinstance(message["time"], int)
    alice.send(word("alice", "carol", "marker"))
    yield carol.next("word")
    assert [m for m in carol.received if m["message_type"] == "word"] == []
    assert [m for m in alice.received if m["message_type"] == "word"] == []


@pytest.mark.parametrize("room", ["", "all"])
@pytest_twisted.inlineCallbacks
def test_lobby_message_reaches_everyone_online_but_the_sender(server, room):
    alice, bob, carol = yield logged_in(server, "alice", "bob", "carol")
    alice.send(word("alice", room, "hello all", chat_type="normal"))
    for client in (bob, carol):
        message = yield client.next("word")
        assert message["chat_type"] == "normal"
        assert message["rece_user"] == "all"
        assert message["content"] == "hello all"
    alice.send({"message_type": "nonsense"})
    yield alice.next("error")
    assert not [m for m in alice.received if m["message_type"] == "word"]


@pytest_twisted.inlineCallbacks
def test_offline_messages_arrive_in_order_at_next_login(server):
    alice, = yield logged_in(server, "alice")
    bob, = yield logged_in(server, "bob")
    yield bob.close()
    yield server.offline("bob")
    for n in range(5):
        alice.send(word("alice", "bob", f"message {n}"))
    # A marker round trip proves the five were processed.
    alice.send({"message_type": "nonsense"})
    yield alice.next("error")
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret"})
    contents = []
    for _ in range(5):
        message = yield bob.next("word")
        contents.append(message["content"])
    assert contents == [f"message {n}" for n in range(5)]
    # Delivered once: a second login gets nothing again.
    yield bob.close()
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret"})
    yield bob.next("update_online_user")
    assert not [m for m in bob.received if m["message_type"] == "word"]


@pytest_twisted.inlineCallbacks
def test_leave_message_and_dropped_connection_notify_the_others(server):
    alice, bob, carol = yield logged_in(server, "alice", "bob", "carol")
    bob.send({"message_type": "leave_message", "username": "bob"})
    notice = yield alice.next("leave_message")
    assert notice == {"message_type": "leave_message", "username": "bob"}
    yield carol.close()
    notice = yield alice.next("leave_message")
    assert notice == {"message_type": "leave_message", "username": "carol"}
    assert server.chat.router.online_accounts() == ["alice"]


@pytest_twisted.inlineCallbacks
def test_second_login_replaces_the_first_connection(server):
    first, = yield logged_in(server, "alice")
    second = yield server.client()
    reply = yield second.request({"message_type": "login", "username": "alice", "password": "secret"})
    assert reply["content"] == "success"
    kicked = yield first.next("kicked")
    assert kicked["reason"] == "logged in from another connection"
    yield first.closed
    bob, = yield logged_in(server, "bob")
    bob.send(word("bob", "alice", "to the new one"))
    message = yield second.next("word")
    assert message["content"] == "to the new one"
    assert server.chat.router.online_accounts() == ["alice", "bob"]


@pytest_twisted.inlineCallbacks
def test_restart_keeps_accounts_and_undelivered_messages(server, settings):
    alice, = yield logged_in(server, "alice")
    bob, = yield logged_in(server, "bob")
    yield bob.close()
    yield server.offline("bob")
    alice.send(word("alice", "bob", "survives a restart"))
    alice.send({"message_type": "nonsense"})
    yield alice.next("error")
    yield server.stop()

    root = build_service(settings)
    root.startService()
    yield root.ready
    try:
        port = root.chat_service.ports[0].getHost().port
        bob = yield JsonClient.connect(port)
        reply = yield bob.request({"message_type": "login", "username": "bob", "password": "secret"})
        assert reply["content"] == "success"
        message = yield bob.next("word")
        assert message["content"] == "survives a restart"
        yield bob.close()
    finally:
        yield root.stopService()


@pytest_twisted.inlineCallbacks
def test_acknowledging_client_gets_receipts_and_unacked_messages_again(server):
    alice, = yield logged_in(server, "alice", acks=True)
    bob, = yield logged_in(server, "bob", acks=True)
    receipt = yield alice.request(word("alice", "bob", "one", client_id="c-1"))
    assert receipt["content"] == "success" and receipt["client_id"] == "c-1"
    first = yield bob.next("word")
    assert first["id"] == receipt["id"]
    yield bob.close()  # never acknowledged
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret", "acks": True})
    again = yield bob.next("word")
    assert again["id"] == first["id"]
    bob.send({"message_type": "ack", "id": [again["id"]]})
    yield bob.close()
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret", "acks": True})
    yield bob.next("update_online_user")
    assert not [m for m in bob.received if m["message_type"] == "word"]


@pytest_twisted.inlineCallbacks
def test_resent_client_id_is_stored_once(server):
    alice, = yield logged_in(server, "alice", acks=True)
    bob, = yield logged_in(server, "bob")
    yield bob.close()
    yield server.offline("bob")
    first = yield alice.request(word("alice", "bob", "once", client_id="same"))
    second = yield alice.request(word("alice", "bob", "once", client_id="same"))
    assert first["id"] == second["id"]
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret"})
    yield bob.next("word")
    yield bob.next("update_online_user")
    assert not [m for m in bob.received if m["message_type"] == "word"]
