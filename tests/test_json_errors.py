"""Bad input in the JSON dialect: a clear error line, the connection kept."""

import json

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from neochat.wire.json_stream import MAX_OBJECT, TRUNCATED

NOT_AN_OBJECT = "not a JSON object: send each request as one {...} object"
from tests.test_json_dialect import logged_in, word
from tests.test_seed002_readings import half_closed_exchange


@defer.inlineCallbacks
def still_works(client):
    """The connection survived: a further request is answered."""
    reply = yield client.request({"message_type": "register", "username": "probe", "password": "x"})
    assert reply["message_type"] == "register"


BAD_BYTES = [
    (b'{"message_type": "login" "username": "a"}\n', "malformed JSON"),
    (b"[1, 2, 3]\n", NOT_AN_OBJECT),
    (b"hello there\n", "malformed JSON"),
    (b'{"message_type": "dance"}\n', "unknown message_type"),
    (b'{"username": "a"}\n', "unknown message_type"),
    (b'{"message_type": 7}\n', "unknown message_type"),
]


@pytest.mark.parametrize("data,reason", BAD_BYTES)
@pytest_twisted.inlineCallbacks
def test_garbage_gets_an_error_line_and_keeps_the_connection(server, data, reason):
    client = yield server.client()
    yield still_works(client)  # the first "{" made this a JSON connection
    client.send_raw(data)
    reply = yield client.next()
    assert reply == {"message_type": "error", "content": "fail", "reason": reason}
    yield still_works(client)


@pytest.mark.parametrize("request_,reason", [
    ({"message_type": "login", "username": "alice"}, "missing field: password"),
    ({"message_type": "login", "username": ["a"], "password": "x"}, "wrong type for field: username"),
    ({"message_type": "register", "username": "has space", "password": "x"}, "bad account name"),
    ({"message_type": "register", "username": "a" * 101, "password": "x"}, "bad account name"),
    ({"message_type": "register", "username": "bob", "password": ""}, "bad password"),
    ({"message_type": "word", "chat_type": "private", "send_user": "a", "rece_user": "b",
      "content": "x"}, "not logged in"),
    ({"message_type": "leave_message", "username": "a"}, "not logged in"),
])
@pytest_twisted.inlineCallbacks
def test_bad_request_fails_with_its_own_message_type(server, request_, reason):
    client = yield server.client()
    reply = yield client.request(request_)
    assert reply == {"message_type": request_["message_type"], "content": "fail", "reason": reason}
    yield still_works(client)


@pytest_twisted.inlineCallbacks
def test_duplicate_register_and_wrong_password_fail(server):
    alice, = yield logged_in(server, "alice")
    other = yield server.client()
    reply = yield other.request({"message_type": "register", "username": "alice", "password": "x"})
    assert reply == {"message_type": "register", "content": "fail", "reason": "account exists"}
    reply = yield other.request({"message_type": "login", "username": "alice", "password": "wrong"})
    assert reply == {"message_type": "login", "content": "fail", "reason": "wrong account or password"}
    reply = yield other.request({"message_type": "login", "username": "nobody", "password": "x"})
    assert reply == {"message_type": "login", "content": "fail", "reason": "wrong account or password"}
    reply = yield alice.request({"message_type": "login", "username": "alice", "password": "secret"})
    assert reply == {"message_type": "login", "content": "fail", "reason": "already logged in"}


@pytest.mark.parametrize("message,reason", [
    (word("mallory", "bob", "spoof"), "send_user is not the logged-in account"),
    (word("alice", "nobody", "hi"), "unknown recipient"),
    (word("alice", "bob", "hi", chat_type="shout"), "unknown chat_type: send private or normal"),
    (word("alice", "no-such-group", "hi", chat_type="normal"),
     'unknown group: rece_user names no group and no account ("" is the lobby)'),
    (word("alice", "bob", 42), "wrong type for field: content"),
    ({"message_type": "word", "chat_type": "private", "send_user": "alice", "content": "x"},
     "missing field: rece_user"),
    ({"message_type": "ack", "id": ["x"]}, "wrong type for field: id"),
])
@pytest_twisted.inlineCallbacks
def test_bad_chat_message_fails_and_is_not_delivered(server, message, reason):
    alice, bob = yield logged_in(server, "alice", "bob")
    reply = yield alice.request(message)
    assert reply == {"message_type": message["message_type"], "content": "fail", "reason": reason}
    alice.send(word("alice", "bob", "after the error"))
    delivered = yield bob.next("word")
    assert delivered["content"] == "after the error"


@pytest_twisted.inlineCallbacks
def test_over_long_message_is_rejected_and_the_next_one_works(server):
    alice, bob = yield logged_in(server, "alice", "bob")
    huge = json.dumps(word("alice", "bob", "x" * (MAX_OBJECT + 10))).encode()
    alice.send_raw(huge[:40000])
    alice.send_raw(huge[40000:] + b"\n")
    reply = yield alice.next("error")
    assert reply["reason"] == f"message too long (limit {MAX_OBJECT} bytes)"
    alice.send(word("alice", "bob", "short"))
    delivered = yield bob.next("word")
    assert delivered["content"] == "short"


@pytest_twisted.inlineCallbacks
def test_client_vanishing_mid_line_loses_nothing_accepted(server):
    alice, bob = yield logged_in(server, "alice", "bob")
    yield bob.close()
    yield server.offline("bob")  # else the messages may go to the closing connection
    accepted = b"".join(json.dumps(word("alice", "bob", f"complete {n}")).encode() for n in range(3))
    partial = json.dumps(word("alice", "bob", "cut off")).encode()[:30]
    alice.send_raw(accepted + partial)
    yield alice.close()
    bob = yield server.client()
    yield bob.request({"message_type": "login", "username": "bob", "password": "secret"})
    for n in range(3):
        delivered = yield bob.next("word")
        assert delivered["content"] == f"complete {n}"
    yield bob.next("update_online_user")
    assert not [m for m in bob.received if m["message_type"] == "word"]


@pytest_twisted.inlineCallbacks
def test_half_close_inside_an_object_is_answered_after_the_whole_ones(server):
    """``nc -q1`` with a request cut short: the whole ones run, then the cut one
    gets an error before the connection closes, instead of silence."""
    register = {"message_type": "register", "username": "carol", "password": "secret"}
    raw = json.dumps(register).encode() + b"\n" + b'{"message_type": "login", "username": "ca'
    data = yield threads.deferToThread(half_closed_exchange, server.port, raw)
    replies = [json.loads(line) for line in data.splitlines()]
    assert [reply["message_type"] for reply in replies] == ["register", "error"]
    assert replies[0]["content"] == "success"
    assert replies[1]["reason"] == TRUNCATED
