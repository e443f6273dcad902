"""The seed-000 JSON dialect over real sockets, on SQLite and MariaDB."""

import pytest_twisted


@pytest_twisted.inlineCallbacks
def test_register_login_and_presence(server):
    alice = yield server.client()
    yield alice.register_and_login("alice")
    online = yield alice.next("update_online_user")
    assert online == {"message_type": "update_online_user", "online_user": ["alice"]}
    bob = yield server.client()
    yield bob.register_and_login("bob")
    for client in (alice, bob):
        online = yield client.next("update_online_user")
        assert online["online_user"] == ["alice", "bob"]


@pytest_twisted.inlineCallbacks
def test_private_message_reaches_recipient(server):
    alice = yield server.client()
    bob = yield server.client()
    yield alice.register_and_login("alice")
    yield bob.register_and_login("bob")
    alice.send({"message_type": "word", "chat_type": "private", "send_user": "alice",
                "rece_user": "bob", "content": "hi bob"})
    message = yield bob.next("word")
    assert message["send_user"] == "alice"
    assert message["rece_user"] == "bob"
    assert message["content"] == "hi bob"
    assert message["chat_type"] == "private"
    assert isinstance(message["id"], int) and isinstance(message["time"], int)
