"""A client written literally from seed 000: blocking sockets, one bare
``json.dumps`` per ``send`` with no separator, exactly the seed's fields."""

import pytest_twisted
from twisted.internet import threads

from tests.clients import BlockingJsonClient


def seed_conversation(port):
    a, b = BlockingJsonClient(port), BlockingJsonClient(port)
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
    b = BlockingJsonClient(port)
    b.send({"message_type": "login", "username": "xiaohong", "password": "123456"})
    assert b.receive("login") == {"message_type": "login", "content": "success"}
    assert b.receive("word")["content"] == "在吗?"
    a.close()
    b.close()


@pytest_twisted.inlineCallbacks
def test_two_seed_clients_register_login_see_each_other_and_chat(server):
    yield threads.deferToThread(seed_conversation, server.port)
