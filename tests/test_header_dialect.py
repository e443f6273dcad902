"""The seed-002 header dialect over real sockets, on SQLite and MariaDB."""

import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from neochat.wire.headers import BAD_LINE


def read_message(sock, buffer):
    """One header message (up to its blank line) from a blocking socket."""
    while b"\n\n" not in buffer[0]:
        chunk = sock.recv(65536)
        assert chunk, "server closed the connection"
        buffer[0] += chunk
    message, buffer[0] = buffer[0].split(b"\n\n", 1)
    return message.decode("utf-8") + "\n\n"


def read_until(sock, buffer, start):
    """Skip pushed events (presence...) up to the message that starts so."""
    while not (message := read_message(sock, buffer)).startswith(start):
        pass
    return message


def seed_002_conversation(port):
    """Exactly the seed's bytes: register, login, text to a friend, the reply."""
    a = socket.create_connection(("127.0.0.1", port), timeout=10)
    b = socket.create_connection(("127.0.0.1", port), timeout=10)
    a_buffer, b_buffer = [b""], [b""]
    for sock, buffer, account in ((a, a_buffer, "+86101"), (b, b_buffer, "+8200001")):
        sock.sendall(f"message_type: registered\ntype: POST\nuser_account: {account}\n"
                     f"user_password: asdf\n\n".encode())
        assert read_message(sock, buffer) == "message_type: registered\nstat: 200\n\n"
        sock.sendall(f"message_type: login\ntype: POST\nuser_account: {account}\n"
                     f"user_password: asdf\n\n".encode())
        assert read_message(sock, buffer) == "message_type: login\nstat: 200\n\n"

    wrong = socket.create_connection(("127.0.0.1", port), timeout=10)
    wrong.sendall(b"message_type: login\ntype: POST\nuser_account: +8611011\nuser_password: asdf\n\n")
    assert read_message(wrong, [b""]).startswith("message_type: login\nstat: 404\n")
    wrong.close()

    a.sendall("user_account: +86101\nmessage_type: text\n"
              "text: 你好 <file>%2B86101_10012312312311_a.png</file>\nfriends: +8200001\n\n".encode())
    read_until(a, a_buffer, "message_type: text\nstat: 200\n")
    forwarded = read_until(b, b_buffer, "user_account: +86101\nmessage_type: text\n")
    lines = forwarded.splitlines()
    assert lines[:3] == ["user_account: +86101", "message_type: text", "id: " + lines[2][4:]]
    assert "text: 你好 <file>%2B86101_10012312312311_a.png</file>" in lines
    assert not any(line.startswith("friends:") for line in lines)

    b.sendall("user_account: +8200001\nmessage_type: text\ntext: 收到\nfriends: +86101\n\n".encode())
    read_until(b, b_buffer, "message_type: text\nstat: 200\n")
    answer = read_until(a, a_buffer, "user_account: +8200001\nmessage_type: text\n")
    assert "text: 收到\n" in answer
    a.close()
    b.close()


@pytest_twisted.inlineCallbacks
def test_a_seed_002_client_registers_logs_in_and_texts_a_friend(server):
    yield threads.deferToThread(seed_002_conversation, server.port)


@pytest_twisted.inlineCallbacks
def test_multi_line_text_travels_as_a_body(server):
    a, b = yield server.logged_in("a", "b", dialect="header")
    text = "line one\nline two\n\nafter a blank line"
    reply = yield a.request({"message_type": "text", "user_account": "a", "friends": "b"}, text.encode())
    assert reply["stat"] == "200"
    message = yield b.next("text")
    assert message["body"].decode() == text and "text" not in message


@pytest.mark.parametrize("raw,stat,reason", [
    (b"message_type: dance\n\n", "400", "unknown message_type"),
    (b"message_type: text\nno colon here\n\n", "400", BAD_LINE),
    (b"message_type: text\nuser_account: a\nfriends: b\n\n", "401", "not logged in"),
    (b"message_type: login\nuser_account: a\n\n", "400", "missing field: user_password"),
    (b"message_type: text\ncontent-length: ten\n\n", "400", "bad content-length"),
])
@pytest_twisted.inlineCallbacks
def test_bad_header_message_gets_stat_and_reason_and_connection_survives(server, raw, stat, reason):
    client = yield server.client("header")
    client.send_raw(raw)
    reply = yield client.next()
    assert (reply["stat"], reply["reason"]) == (stat, reason)
    yield client.register_and_login("survivor")


@pytest.mark.parametrize("headers,stat,reason", [
    ({"message_type": "text", "user_account": "mallory", "friends": "b", "text": "x"}, "403",
     "user_account is not the logged-in account"),
    ({"message_type": "text", "user_account": "a", "friends": "nobody", "text": "x"}, "404", "unknown recipient"),
    ({"message_type": "text", "user_account": "a", "text": "x"}, "400", "missing field: friends (or group_id)"),
    ({"message_type": "get_old_message", "with_user": "b", "count": "many"}, "400", "wrong type for field: count"),
    ({"message_type": "voice", "user_account": "a", "friends": "offline-friend", "text": "x"}, "480", "friend offline"),
    ({"message_type": "voice", "user_account": "a", "friends": "b"}, "400",
     "voice needs its audio as a content-length body, or a text"),
])
@pytest_twisted.inlineCallbacks
def test_bad_request_after_login(server, headers, stat, reason):
    a, b = yield server.logged_in("a", "b", dialect="header")
    offline = yield server.client("header")
    yield offline.register_and_login("offline-friend")
    yield offline.close()
    for _ in range(500):  # the server answers what the client sent, then lets it go
        if server.chat.router.session_of("offline-friend") is None:
            break
        yield task.deferLater(reactor, 0.01, lambda: None)
    reply = yield a.request(headers)
    assert (reply["message_type"], reply["stat"], reply["reason"]) == (headers["message_type"], stat, reason)


@pytest_twisted.inlineCallbacks
def test_voice_clip_reaches_an_online_friend_in_either_dialect(server):
    a, = yield server.logged_in("a", dialect="header")
    b, = yield server.logged_in("b", dialect="json")
    clip = bytes(range(256)) * 4
    reply = yield a.request({"message_type": "voice", "user_account": "a", "friends": "b"}, clip)
    assert reply["stat"] == "200"
    notice = yield b.next("voice")
    import base64
    assert notice["user_account"] == "a" and base64.b64decode(notice["body"]) == clip


@pytest_twisted.inlineCallbacks
def test_json_and_header_clients_chat_with_each_other(server):
    h, = yield server.logged_in("h", dialect="header")
    j, = yield server.logged_in("j", dialect="json")
    yield h.request({"message_type": "text", "user_account": "h", "friends": "j", "text": "from headers"})
    message = yield j.next("word")
    assert (message["send_user"], message["content"]) == ("h", "from headers")
    j.send({"message_type": "word", "chat_type": "private", "send_user": "j", "rece_user": "h",
            "content": "from json"})
    message = yield h.next("text")
    assert (message["user_account"], message["text"]) == ("j", "from json")


@pytest.mark.parametrize("dialect", ["json", "header"])
@pytest_twisted.inlineCallbacks
def test_connection_killed_mid_delivery_gets_every_unacknowledged_message_again(server, dialect):
    sender, = yield server.logged_in("sender", dialect="header")
    receiver = yield server.client(dialect)
    yield receiver.register_and_login("receiver", **({"acks": True} if dialect == "json" else {"acks": "true"}))
    yield receiver.close()
    total = 300
    for n in range(total):
        sender.send({"message_type": "text", "user_account": "sender", "friends": "receiver", "text": f"n{n}"})
    for _ in range(total):
        yield sender.next("text", reply=True)

    # Log in with acks, acknowledge the first message, read 100 more, die.
    kind = "word" if dialect == "json" else "text"
    receiver = yield server.client(dialect)
    login = ({"message_type": "login", "username": "receiver", "password": "secret", "acks": True}
             if dialect == "json" else
             {"message_type": "login", "user_account": "receiver", "user_password": "secret", "acks": "true"})
    yield receiver.request(login)
    first = yield receiver.next(kind)
    acked = [int(first["id"])]
    ack = {"message_type": "ack", "id": acked if dialect == "json" else str(acked[0])}
    receiver.send(ack)
    yield receiver.request({"message_type": "get_current_user"})  # the ack was handled
    for _ in range(100):
        yield receiver.next(kind)
    receiver.transport.abortConnection()
    yield receiver.closed

    receiver = yield server.client(dialect)
    yield receiver.request(login)
    contents = []
    for _ in range(total - 1):
        message = yield receiver.next(kind)
        contents.append(message.get("content", message.get("text")))
    assert contents == [f"n{n}" for n in range(1, total)]
