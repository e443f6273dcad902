"""A client written literally from seed 000: blocking sockets, one bare
``json.dumps`` per ``send`` with no separator, exactly the seed's fields."""

import json
import socket

import pytest_twisted
from twisted.internet import threads


class SeedClient:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, obj):
        self.sock.send(json.dumps(obj).encode("utf-8"))

    def receive(self, message_type):
        """Read lines until one of ``message_type`` arrives; return it."""
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["message_type"] == message_type:
                    return message
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buffer += chunk

    def close(self):
        self.sock.close()


def seed_conversation(port):
    a, b = SeedClient(port), SeedClient(port)
    for client, name in ((a, "xiaoming"), (b, "xiaohong")):
        client.send({"message_type": "register", "username": name, "password": "123456"})
        assert client.receive("register") == {"message_type": "register", "content": "success"}
        client.send({"message_type": "login", "username": name, "password": "123456"})
        assert client.receive("login") == {"message_type": "login", "content": "success"}

    # A sees B come online.
    online = a.receive("update_online_user")
    while "xiaohong" not in online["online_user"]:
        online = a.receive("update_online_user")
    assert online["online_user"] == ["xiaohong", "xiaoming"]
    assert b.receive("update_online_user")["online_user"] == ["xiaohong", "xiaoming"]

    a.send({"message_type": "word", "chat_type": "private",
            "send_user": "xiaoming", "rece_user": "xiaohong", "content": "你好"})
    private = b.receive("word")
    assert (private["chat_type"], private["send_user"], private["rece_user"], private["content"]) == (
        "private", "xiaoming", "xiaohong", "你好")

    b.send({"message_type": "word", "chat_type": "normal",
            "send_user": "xiaohong", "rece_user": "", "content": "大家好"})
    lobby = a.receive("word")
    assert (lobby["chat_type"], lobby["send_user"], lobby["content"]) == ("normal", "xiaohong", "大家好")

    b.send({"message_type": "leave_message", "username": "xiaohong"})
    assert a.receive("leave_message") == {"message_type": "leave_message", "username": "xiaohong"}

    # B is offline now: A's message waits for B's next login.
    a.send({"message_type": "word", "chat_type": "private",
            "send_user": "xiaoming", "rece_user": "xiaohong", "content": "在吗?"})
    b.close()
    a.send({"message_type": "login", "username": "xiaoming", "password": "123456"})
    a.receive("login")  # a fail reply ("already logged in") proves the word was handled
    b = SeedClient(port)
    b.send({"message_type": "login", "username": "xiaohong", "password": "123456"})
    assert b.receive("login") == {"message_type": "login", "content": "success"}
    assert b.receive("word")["content"] == "在吗?"
    a.close()
    b.close()


@pytest_twisted.inlineCallbacks
def test_two_seed_clients_register_login_see_each_other_and_chat(server):
    yield threads.deferToThread(seed_conversation, server.port)
