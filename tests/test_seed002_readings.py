"""Every plausible reading of seed 002, as raw bytes a client written from the
seed would send, through a real socket: each works or gets an explicit error
that names what to send (docs/protocol.md, "Readings of the seeds")."""

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from neochat.chat.files import FileLimits
from neochat.services.header_dialect import HeaderDialect
from neochat.wire.headers import BAD_LINE, HeaderDecoder
from tests.conftest import Tripped

README = Path(__file__).parent.parent / "README.md"
SEED_UPLOAD = b"task_id: 1\nuser_account: +86101\ntime: 10012312312311\n\n0x00\n"


def parse(data):
    """The header messages in ``data``, as dicts of headers plus ``body``
    (a JSON body's fields merged in)."""
    found = []
    for item in HeaderDecoder().feed(data):
        message = dict(item.headers, body=item.body)
        if item.headers.get("content-type") == "application/json":
            message.update(json.loads(item.body))
        found.append(message)
    return found


def half_closed_exchange(port, raw):
    """Send ``raw``, half-close as ``nc -q1`` does, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def login_bytes(account, password="secret"):
    return f"message_type: login\ntype: POST\nuser_account: {account}\nuser_password: {password}\n\n".encode()


def replies(messages, key="stat"):
    return [message for message in messages if key in message]


@pytest.fixture
def quick_body_timeout(monkeypatch):
    monkeypatch.setattr(HeaderDialect, "body_idle_timeout", 0.3)


@defer.inlineCallbacks
def half_close(server, raw):
    data = yield threads.deferToThread(half_closed_exchange, server.port, raw)
    return parse(data)


def stored(server, name):
    return (server.chat.files.directory / name).read_bytes()


# -- the upload exchange ---------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_seed_upload_without_length_ends_at_the_half_close_and_stores_the_bytes(server):
    yield server.logged_in("+86101", dialect="header")
    messages = yield half_close(server, login_bytes("+86101") + SEED_UPLOAD)
    [reply] = [m for m in messages if "task_id" in m]
    assert (reply["stat"], reply["task_id"]) == ("200", "1")
    assert reply["file"].startswith("%2B86101_")
    assert stored(server, reply["file"]) == b"0x00\n"  # the seed's placeholder, byte for byte


@pytest_twisted.inlineCallbacks
def test_seed_upload_without_length_and_without_end_gets_411_and_the_connection_goes_on(
        server, quick_body_timeout):
    client, = yield server.logged_in("+86101", dialect="header")
    client.send_raw(SEED_UPLOAD)
    reply = yield client.next(None, reply=True)
    assert (reply["task_id"], reply["stat"]) == ("1", "411")
    assert "content-length" in reply["reason"] and "half-close" in reply["reason"]
    assert list(server.chat.files.directory.glob("%2B86101_*")) == []
    ok, profile = yield client.op("get_current_user")
    assert ok and profile["user_account"] == "+86101"


@pytest_twisted.inlineCallbacks
def test_upload_with_content_length_streams_past_the_in_memory_body_limit(server):
    client, = yield server.logged_in("+86101", dialect="header")
    data = bytes(range(256)) * (17 * 4096)  # 17 MiB: more than a body held whole may be
    client.send_raw(b"task_id: 7\nuser_account: +86101\ntime: 1\nfile_name: a.bin\n"
                    b"content-length: %d\n\n" % len(data) + data)
    reply = yield client.next(None, timeout=60, reply=True)
    assert (reply["task_id"], reply["stat"]) == ("7", "200") and reply["file"].endswith("_a.bin")
    assert stored(server, reply["file"]) == data


@pytest_twisted.inlineCallbacks
def test_upload_over_max_file_size_is_413_with_or_without_length(server):
    server.chat.files.limits = FileLimits(max_file_size=1000)
    yield server.logged_in("+86101", dialect="header")
    sized = b"task_id: 1\nuser_account: +86101\ntime: 1\ncontent-length: 2000\n\n" + b"x" * 2000
    unsized = b"task_id: 2\nuser_account: +86101\ntime: 1\n\n" + b"y" * 2000
    tripped = Tripped()
    messages = yield half_close(server, login_bytes("+86101") + sized + b"message_type: get_current_user\n\n"
                                + unsized)
    uploads = [m for m in messages if "task_id" in m]
    assert [(m["task_id"], m["stat"]) for m in uploads] == [("1", "413"), ("2", "413")]
    assert all("1000-byte limit" in m["reason"] for m in uploads)
    assert tripped["max_file_size"] == 2  # counted (neochat_limits_tripped_total) before a byte and midway
    assert replies(messages)[2]["message_type"] == "get_current_user"  # in step after the sized one
    assert list(server.chat.files.directory.glob("%2B86101_*")) == []


@pytest_twisted.inlineCallbacks
def test_upload_before_login_is_401_and_its_bytes_are_dropped(server):
    messages = yield half_close(server, SEED_UPLOAD + b"message_type: dance\n\n")
    assert [(m["task_id"], m["stat"]) for m in messages] == [("1", "401")]  # the rest was its body


@pytest_twisted.inlineCallbacks
def test_upload_with_a_badly_encoded_account_is_refused_and_its_bytes_dropped(server):
    yield server.logged_in("+86101", dialect="header")
    messages = yield half_close(server, login_bytes("+86101") + b"task_id: 4\nuser_account: %FF\n\n"
                                b"message_type: dance\n\n")
    assert [(m["stat"], m["reason"]) for m in replies(messages)[1:]] == [
        ("400", "user_account is not valid URL-encoded UTF-8")]


@pytest_twisted.inlineCallbacks
def test_sized_body_whose_bytes_stop_coming_is_refused_and_the_connection_goes_on(server, quick_body_timeout):
    client, = yield server.logged_in("+86101", dialect="header")
    client.send_raw(b"task_id: 3\nuser_account: +86101\ntime: 1\ncontent-length: 10\n\nabc")
    reply = yield client.next(None, reply=True)
    assert (reply["task_id"], reply["stat"], reply["reason"]) == ("3", "400", "body incomplete: 3 of 10 bytes came")
    client.send_raw(b"message_type: text\nuser_account: +86101\nfriends: +86101\ncontent-length: 10\n\nabc")
    reply = yield client.next("text", reply=True)
    assert (reply["stat"], reply["reason"]) == ("400", "body incomplete: 3 of 10 bytes came")
    ok, _ = yield client.op("get_current_user")
    assert ok


# -- half-close, and the README's netcat lines ----------------------------------

@pytest_twisted.inlineCallbacks
def test_half_closed_header_login_gets_its_reply_and_the_replay(server):
    sender, = yield server.logged_in("+8200001", dialect="header")
    yield threads.deferToThread(half_closed_exchange, server.port, b"message_type: registered\n"
                                b"user_account: +86101\nuser_password: secret\n\n")
    yield sender.request({"message_type": "text", "user_account": "+8200001", "friends": "+86101", "text": "早"})
    messages = yield half_close(server, login_bytes("+86101") + b"message_type: get_current_user\n\n")
    kinds = [(m.get("message_type"), m.get("stat")) for m in messages]
    assert kinds == [("login", "200"), ("text", None), ("update_online_user", None), ("get_current_user", "200")]
    assert messages[1]["text"] == "早"


@pytest_twisted.inlineCallbacks
def test_half_closed_json_requests_get_their_replies(server):
    raw = (b'{"message_type":"register","username":"j","password":"pw"}\n'
           b'{"message_type":"login","username":"j","password":"pw"}\n'
           b'{"message_type":"get_current_user"}')
    data = yield threads.deferToThread(half_closed_exchange, server.port, raw)
    lines = [json.loads(line) for line in data.splitlines()]
    assert [(m["message_type"], m.get("content")) for m in lines] == [
        ("register", "success"), ("login", "success"), ("update_online_user", None),
        ("get_current_user", "success")]


@pytest_twisted.inlineCallbacks
def test_last_message_without_its_blank_line_is_answered_at_the_half_close(server):
    messages = yield half_close(server, b"message_type: registered\nuser_account: a\nuser_password: b")
    assert [(m["message_type"], m["stat"]) for m in messages] == [("registered", "200")]


def run_readme_netcat_lines(port):
    lines = [line for line in README.read_text().splitlines() if "| nc -q1 127.0.0.1 7000" in line]
    assert len(lines) >= 2, "the README's netcat examples moved"
    return [
        subprocess.run(line.replace("127.0.0.1 7000", f"127.0.0.1 {port}"), shell=True, capture_output=True,
                       timeout=30, check=True).stdout
        for line in lines
    ]


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd is not installed (scripts/test installs it)")
@pytest_twisted.inlineCallbacks
def test_readme_netcat_examples_print_their_replies(server):
    register, login = yield threads.deferToThread(run_readme_netcat_lines, server.port)
    assert parse(register) == [{"message_type": "registered", "stat": "200", "body": b""}]
    assert json.loads(login.splitlines()[0]) == {"message_type": "login", "content": "success"}


# -- the plugin calls: GetUserInfo, GetOldMessage, GetMessage, SendMessage ------

@pytest_twisted.inlineCallbacks
def test_get_user_info_takes_the_seeds_user_account_or_account(server):
    a, = yield server.logged_in("+86101", dialect="header")
    yield server.logged_in("+8200001", dialect="header")
    for raw in (b"message_type: get_user_info\nuser_account: +8200001\n\n",
                b"message_type: get_user_info\nuser_account: %2B8200001\n\n",
                b"message_type: get_user_info\nuser_account: +86101\naccount: +8200001\n\n"):
        a.send_raw(raw)
        reply = yield a.next("get_user_info", reply=True)
        assert (reply["stat"], reply["user_account"]) == ("200", "+8200001")
    a.send_raw(b"message_type: get_user_info\nuser_account: +8200001\naccount: +8200001\n\n")
    reply = yield a.next("get_user_info", reply=True)
    assert (reply["stat"], reply["reason"]) == ("403", "user_account is not the logged-in account")


@pytest_twisted.inlineCallbacks
def test_get_old_message_takes_the_seeds_grop_id_and_number(server):
    a, b = yield server.logged_in("+86101", "+8200001", dialect="header")
    yield a.op("group_create", grop_id="g1")
    yield b.op("group_join", group_id="g1")
    for n in range(5):
        a.send_raw(f"user_account: +86101\nmessage_type: text\ntext: m{n}\ngrop_id: g1\n\n".encode())
        yield a.next("text", reply=True)
    a.send_raw(b"message_type: get_old_message\ngrop_id: g1\nnumber: 2\n\n")
    reply = yield a.next("get_old_message", reply=True)
    assert [m["text"] for m in reply["messages"]] == ["m4", "m3"]
    a.send_raw(b"message_type: get_old_message\ngroup_id: g1\nnumber: 2\ncount: 3\n\n")
    reply = yield a.next("get_old_message", reply=True)
    assert (reply["stat"], reply["reason"]) == ("400", "count and number differ: give one")


@pytest.mark.parametrize("poller", ["header", "json"])
@pytest_twisted.inlineCallbacks
def test_get_message_returns_and_acknowledges_pending_messages_oldest_first(server, poller):
    sender, = yield server.logged_in("sender", dialect="header")
    client = yield server.client(poller)
    yield client.register_and_login("poller", acks=True if poller == "json" else "true")
    for n in range(5):
        yield sender.request({"message_type": "send_message", "user_account": "sender", "friends": "poller",
                              "text": f"n{n}"})
    for _ in range(5):
        yield client.next("word" if poller == "json" else "text")  # pushed, not acknowledged
    if poller == "header":
        client.send_raw(b"message_type: get_message\nnumber: 3\n\n")
        page = yield client.next("get_message", reply=True)
        assert [m["text"] for m in page["messages"]] == ["n0", "n1", "n2"] and page["more"] == "true"
    else:
        ok, page = yield client.op("get_message", number=3)
        assert [m["content"] for m in page["messages"]] == ["n0", "n1", "n2"] and page["more"] is True
    ok, page = yield client.op("get_message")
    assert ok and len(page["messages"]) == 2 and page["more"] in (False, "false")
    ok, page = yield client.op("get_message")
    assert ok and page["messages"] == []
    ok, reply = yield client.op("get_message", count=101)
    assert not ok and reply["reason"] == "count must be 1 to 100"


@pytest_twisted.inlineCallbacks
def test_send_message_is_text(server):
    a, b = yield server.logged_in("+86101", "+8200001", dialect="header")
    a.send_raw("user_account: +86101\nmessage_type: send_message\ntext: 你好\nfriends: +8200001\n\n".encode())
    reply = yield a.next("send_message", reply=True)
    assert reply["stat"] == "200" and reply["id"]
    message = yield b.next("text")
    assert (message["user_account"], message["text"]) == ("+86101", "你好")


# -- registration, voice, several friends, the key request ---------------------

@pytest.mark.parametrize("dialect", ["header", "json"])
@pytest_twisted.inlineCallbacks
def test_profile_fields_sent_at_registration_are_stored(server, dialect):
    client = yield server.client(dialect)
    profile = {"user_name": "张三", "user_phone": "+86 101", "sex": "female", "birthday": "1990-01-02",
               "address": "北京"}
    if dialect == "header":
        client.send_raw(b"message_type: registered\ntype: POST\nuser_account: +86101\nuser_password: asdf\n"
                        + "".join(f"{k}: {v}\n" for k, v in profile.items()).encode() + b"\n")
        reply = yield client.next("registered")
        assert reply["stat"] == "200"
        client.send_raw(b"message_type: registered\nuser_account: +86102\nuser_password: asdf\nsex: other\n\n")
        reply = yield client.next("registered")
        assert (reply["stat"], reply["reason"]) == ("400", "sex must be male, female or neutral")
    else:
        reply = yield client.request({"message_type": "register", "username": "+86101", "password": "asdf",
                                      **profile})
        assert reply["content"] == "success"
        reply = yield client.request({"message_type": "register", "username": "+86102", "password": "asdf",
                                      "birthday": "yesterday"})
        assert reply["reason"] == "birthday must be YYYY-MM-DD"
    stored_profile = yield server.chat.profiles.get("+86101")
    assert {k: stored_profile[k] for k in profile} == profile
    assert (yield server.chat.store.users.existing(["+86102"])) == set()


@pytest_twisted.inlineCallbacks
def test_voice_shaped_like_a_text_message_delivers_its_text(server):
    a, b = yield server.logged_in("+86101", "+8200001", dialect="header")
    a.send_raw("user_account: +86101\nmessage_type: voice\ntext: 听 <file>x</file>\nfriends: +8200001\n\n".encode())
    reply = yield a.next("voice", reply=True)
    assert reply["stat"] == "200"
    voice = yield b.next("voice")
    assert (voice["user_account"], voice["text"], voice["body"]) == ("+86101", "听 <file>x</file>", b"")


@pytest.mark.parametrize("friends", ["+8200001 +8200002", "+8200001,+8200002", "+8200001, +8200002"])
@pytest_twisted.inlineCallbacks
def test_friends_naming_several_accounts_reaches_each(server, friends):
    a, b, c = yield server.logged_in("+86101", "+8200001", "+8200002", dialect="header")
    a.send_raw(f"user_account: +86101\nmessage_type: text\ntext: 大家好\nfriends: {friends}\n\n".encode())
    reply = yield a.next("text", reply=True)
    assert reply["stat"] == "200"
    assert [entry["friends"] for entry in reply["sent"]] == ["+8200001", "+8200002"]
    for client, entry in ((b, reply["sent"][0]), (c, reply["sent"][1])):
        message = yield client.next("text")
        assert (message["text"], message["id"]) == ("大家好", str(entry["id"]))


@pytest_twisted.inlineCallbacks
def test_friends_with_an_unknown_account_reaches_nobody(server):
    a, b = yield server.logged_in("+86101", "+8200001", dialect="header")
    a.send_raw(b"user_account: +86101\nmessage_type: text\ntext: hi\nfriends: +8200001 +999\n\n")
    reply = yield a.next("text", reply=True)
    assert (reply["stat"], reply["reason"]) == ("404", "unknown recipient: +999")
    ok, page = yield b.op("get_old_message", with_user="+86101")
    assert ok and page["messages"] == []


@pytest_twisted.inlineCallbacks
def test_seed_key_request_on_the_message_server_gives_a_key(server):
    a, b = yield server.logged_in("+86101", "+8200001", dialect="header")
    a.send_raw(b"user_account: +86101\nfriends: +8200001\n\n")
    reply = yield a.next(None, reply=True)
    assert set(reply) == {"stat", "connection_key", "body"} and reply["stat"] == "200"
    a.send_raw(b"user_account: +86101\nmessage_type: call\nfriends: +8200001\ncell_key: %s\n\n"
               % reply["connection_key"].encode())
    call = yield b.next("call")
    assert call["cell_key"] == reply["connection_key"]
    yield a.next("call", reply=True)
    a.send_raw(b"user_account: +8200001\nfriends: +86101\n\n")
    reply = yield a.next(None, reply=True)
    assert (reply["stat"], reply["reason"]) == ("403", "user_account is not the logged-in account")
    stranger = yield server.client("header")
    stranger.send_raw(b"user_account: +86101\nfriends: +8200001\n\n")
    reply = yield stranger.next(None, reply=True)
    assert (reply["stat"], reply["reason"]) == ("401", "not logged in")


# -- the ways of writing a header message --------------------------------------

READINGS = [
    # (what a seed client sends after logging in as +86101, the reply's stat and reason)
    (b"User_Account: +86101\nMESSAGE_TYPE: text\nText: a\nFriends: +8200001\n\n", "200", None),
    (b"user_account: +86101\nmessage_type: TEXT\ntext: a\nfriends: +8200001\n\n", "200", None),
    (b"user_account: +86101\nmessage_type: text\ntype: POST\ntext: a\nfriends: +8200001\n\n", "200", None),
    (b"user_account: +86101\r\nmessage_type: text\r\ntext: a\r\nfriends: +8200001\r\n\r\n", "200", None),
    (b"user_account : +86101\nmessage_type : text\ntext : a\nfriends : +8200001\n\n", "200", None),
    (b"user_account:+86101\nmessage_type:text\ntext:a\nfriends:+8200001\n\n", "200", None),
    (b"user_account: %2B86101\nmessage_type: text\ntext: a\nfriends: %2B8200001\n\n", "200", None),
    (b"user_account: +86101\nmessage_type: text\ntext: a\n\n", "400", "missing field: friends (or group_id)"),
    (b"user_account: +86101\nmessage_type: text\nfriends: +8200001\n\n", "400",
     "missing field: text (or a content-length body)"),
    (b"user_account: +86101\nmessage_type: text\ntext: a\nfriends:\n\n", "400", "missing field: friends"),
    (b"user_account: +86101\nmessage_type:\ntext: a\nfriends: +8200001\n\n", "400", "missing field: message_type"),
    (b"user_account: +86101\nmessage_type: cell\ncell_type: 404 | 200\nfriends: +8200001\n\n", "400",
     "cell_type must be 200 or 404"),
    (b"user_account: +86101\nmessage_type: call\nfriends: +8200001\n\n", "400", "missing field: cell_key"),
    (b"user_account: +86101\nmessage_type: voice\nfriends: +8200001 +86101\ntext: a\n\n", "400",
     "friends must name one account for voice"),
    (b"user_account: +86101\nmessage_type: text\ntext: a\nfriends: +8200001\nfriends: +86101\n\n", "200", None),
    (b"user_account: +86101\ntext: a\nfriends: +8200001\n\n", "400", "missing field: message_type"),
    (b"user_account: +86101\nmessage_type: text\ntext: a\nfriends: +8200001\ngroup_id: all\n\n", "400",
     "give friends or group_id, not both"),
    (b"user_account: +86101\nfriends: +8200001\ncell_key: k\n\n", "400", "missing field: message_type"),
    (b"user_account: +86101\nmessage_type: text\ntext: line 1\nline 2\nfriends: +8200001\n\n", "400", BAD_LINE),
    (b"user_account: %FF\nmessage_type: text\ntext: a\nfriends: +8200001\n\n", "400",
     "user_account is not valid URL-encoded UTF-8"),
]


@pytest.mark.parametrize("raw,stat,reason", READINGS)
@pytest_twisted.inlineCallbacks
def test_each_reading_of_a_header_message_works_or_names_what_to_send(server, raw, stat, reason):
    yield server.logged_in("+86101", "+8200001", dialect="header")
    messages = yield half_close(server, login_bytes("%2B86101") + raw)
    answer = replies(messages)[1:]  # after the login's own
    assert [(m["stat"], m.get("reason")) for m in answer] == [(stat, reason)], messages


@pytest.mark.parametrize("name", [b"registered", b"register", b"Registered"])
@pytest_twisted.inlineCallbacks
def test_registered_and_register_both_register(server, name):
    messages = yield half_close(server, b"message_type: " + name + b"\ntype: POST\nuser_account: +86101\n"
                                b"user_password: asdf\n\n" + login_bytes("+86101", "asdf"))
    assert [(m["message_type"], m["stat"]) for m in replies(messages)] == [(name.decode(), "200"), ("login", "200")]
