"""Every plausible reading of seed 000, as raw bytes a client written from the
seed would send, through a real socket on SQLite and MariaDB: each one works
or gets an error reply that says what to send instead (docs/protocol.md,
"Readings of the seeds")."""

import json
import socket

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import defer, threads

from tests.clients import BlockingJsonClient
from tests.test_json_errors import NOT_AN_OBJECT

REGISTER = b'{"message_type":"register","username":"probe","password":"x"}'


def line(text):
    return text.encode("utf-8") + b"\n"


@defer.inlineCallbacks
def answers_register(client, terminator=b"\n"):
    """The connection is in step: a register sent now is answered."""
    client.send_raw(REGISTER + terminator)
    reply = yield client.next("register")
    assert reply["content"] in ("success", "fail") and reply.get("reason") != "malformed JSON", reply


# -- framing -----------------------------------------------------------------

BROKEN_LINES = [
    b"{this is not json\n",
    b'{"message_type":"login","username":"abc\n',  # unterminated string
    b"{\n",  # unbalanced brace
    b'{"message_type":"login","username":\n',  # a value never sent
    b'{"message_type":"login","username":"a"\n',  # the closing brace forgotten
    b'{"message_type":"login" "username":"a"}\n',
    b'{"message_type":"login","password":"\\q"}\n',  # a bad escape
    b"[\n",
    b"hello there\n",
]


@pytest.mark.parametrize("first", [True, False], ids=["first-message", "after-a-request"])
@pytest.mark.parametrize("garbage", BROKEN_LINES)
@pytest_twisted.inlineCallbacks
def test_a_broken_line_is_answered_and_the_next_line_works(server, garbage, first):
    client = yield server.client()
    if not first or not garbage.startswith((b"{", b"[")):
        yield answers_register(client)  # the first "{" makes it a JSON connection
    client.send_raw(garbage)  # an unfinished object is known broken when the next line starts
    yield answers_register(client)
    errors = client.of_type("error")  # they came before the register reply
    assert errors == [{"message_type": "error", "content": "fail", "reason": "malformed JSON"}]


@pytest_twisted.inlineCallbacks
def test_a_broken_object_is_answered_before_its_line_ends(server):
    client = yield server.client()
    client.send_raw(b'{"message_type": "login", oops')
    error = yield client.next("error")
    assert error["reason"] == "malformed JSON"
    client.send_raw(b' "more of the same line"}')  # skipped up to its closing brace
    yield answers_register(client, terminator=b"")


@pytest_twisted.inlineCallbacks
def test_back_to_back_objects_resynchronise_after_a_broken_one(server):
    client = yield server.client()
    client.send_raw(b'{"message_type":"login" "username":"a"}' + REGISTER)
    error = yield client.next("error")
    assert error["reason"] == "malformed JSON"
    reply = yield client.next("register")
    assert reply == {"message_type": "register", "content": "success"}


@pytest_twisted.inlineCallbacks
def test_pretty_printed_objects_spanning_lines_work(server):
    client = yield server.client()
    client.send_raw(json.dumps({"message_type": "register", "username": "pretty", "password": "x"},
                               indent=4).encode() + b"\n")
    reply = yield client.next("register")
    assert reply == {"message_type": "register", "content": "success"}


@pytest.mark.parametrize("deep", [b"[" * 1200 + b"]" * 1200, b'{"a":' * 1200 + b"1" + b"}" * 1200])
@pytest_twisted.inlineCallbacks
def test_json_nested_1200_deep_is_refused_and_the_connection_kept(server, deep):
    client = yield server.client()
    yield answers_register(client)
    client.send_raw(deep + b"\n")
    error = yield client.next("error")
    assert error == {"message_type": "error", "content": "fail", "reason": "nesting too deep (limit 64)"}
    yield answers_register(client)


@pytest.mark.parametrize("raw, reason", [
    (b'{"message_type":"register","username":"\\ud800","password":"x"}\n', "lone surrogate in a string: "),
    (b'{"message_type":"register","username":"s","password":"a\\udc00b"}\n', "lone surrogate in a string: "),
    (b'{"message_type":"register","username":"\xff\xfe","password":"x"}\n', "not UTF-8: send text as UTF-8"),
])
@pytest_twisted.inlineCallbacks
def test_a_lone_surrogate_or_bad_utf8_is_a_bad_request(server, raw, reason):
    client = yield server.client()
    client.send_raw(raw)
    reply = yield client.next("register")
    assert (reply["message_type"], reply["content"]) == ("register", "fail")
    assert reply["reason"].startswith(reason)
    yield answers_register(client)


@pytest.mark.parametrize("value", [b"[" + REGISTER + b"]", b'"register"', b"42", b"null"])
@pytest_twisted.inlineCallbacks
def test_an_array_or_scalar_instead_of_an_object_is_refused(server, value):
    client = yield server.client()
    if not value.startswith(b"["):
        yield answers_register(client)  # a connection that starts with "[" is JSON too
    client.send_raw(value + b"\n")
    error = yield client.next("error")
    assert error == {"message_type": "error", "content": "fail", "reason": NOT_AN_OBJECT}
    yield answers_register(client)


# -- accounts and presence -----------------------------------------------------

@pytest.mark.parametrize("register, login", [
    (b"\xef\xbb\xbf" + REGISTER + b"\r\n", b'{"message_type":"login","username":"probe","password":"x"}\r\n'),
    (b'{"message_type":"register","username":10001,"password":123456}\n',
     b'{"message_type":"login","username":"10001","password":"123456"}\n'),
    (b'{"message_type":"register","username":"extra","password":"x","time":1,"version":"1.0"}\n',
     b'{"message_type":"login","username":"extra","password":"x","client":"seed-000 demo"}\n'),
], ids=["byte-order-mark-and-crlf", "numbers-as-names", "unknown-extra-fields"])
@pytest_twisted.inlineCallbacks
def test_register_and_login_readings_work(server, register, login):
    client = yield server.client()
    for raw, message_type in ((register, "register"), (login, "login")):
        client.send_raw(raw)
        reply = yield client.next(message_type)
        assert reply == {"message_type": message_type, "content": "success"}


@pytest.mark.parametrize("name_field", ["username", "send_user"])
@pytest_twisted.inlineCallbacks
def test_leave_message_names_the_leaver_in_username_or_send_user(server, name_field):
    alice, bob = yield server.logged_in("alice", "bob")
    bob.send_raw(line(f'{{"message_type":"leave_message","{name_field}":"bob"}}'))
    notice = yield alice.next("leave_message")
    assert notice == {"message_type": "leave_message", "username": "bob"}


@pytest_twisted.inlineCallbacks
def test_a_client_asking_for_update_online_user_gets_the_list(server):
    alice, bob = yield server.logged_in("alice", "bob")
    bob.received.clear()
    bob.send_raw(b'{"message_type":"update_online_user"}\n')
    reply = yield bob.next("update_online_user")
    assert reply == {"message_type": "update_online_user", "online_user": ["alice", "bob"]}
    stranger = yield server.client()
    stranger.send_raw(b'{"message_type":"update_online_user"}\n')
    reply = yield stranger.next("update_online_user")
    assert reply == {"message_type": "update_online_user", "content": "fail", "reason": "not logged in"}


# -- word ----------------------------------------------------------------------

def word_bytes(**fields):
    return line(json.dumps({"message_type": "word", **fields}, ensure_ascii=False))


@pytest_twisted.inlineCallbacks
def test_normal_chat_naming_an_account_goes_to_the_lobby(server):
    alice, bob, carol = yield server.logged_in("alice", "bob", "carol")
    alice.send_raw(word_bytes(chat_type="normal", send_user="alice", rece_user="bob", content="hi all"))
    for client in (bob, carol):
        message = yield client.next("word")
        assert (message["chat_type"], message["rece_user"], message["content"]) == ("normal", "all", "hi all")
    alice.send_raw(word_bytes(chat_type="normal", send_user="alice", rece_user="nobody", content="x"))
    reply = yield alice.next("word")
    assert reply["reason"] == 'unknown group: rece_user names no group and no account ("" is the lobby)'


@pytest.mark.parametrize("chat_type", ["group", "Normal", None])
@pytest_twisted.inlineCallbacks
def test_group_chat_as_normal_group_or_without_chat_type(server, chat_type):
    alice, bob, carol = yield server.logged_in("alice", "bob", "carol")
    ok, _ = yield alice.op("group_create", group_id="team")
    assert ok
    ok, _ = yield alice.op("group_invite", group_id="team", member="bob")
    assert ok
    fields = {} if chat_type is None else {"chat_type": chat_type}
    alice.send_raw(word_bytes(**fields, send_user="alice", rece_user="team", content="team only"))
    message = yield bob.next("word")
    assert (message["chat_type"], message["rece_user"], message["content"]) == ("normal", "team", "team only")
    alice.send_raw(word_bytes(chat_type="private", send_user="alice", rece_user="carol", content="marker"))
    yield carol.next("word")
    assert carol.of_type("word") == []


@pytest.mark.parametrize("rece_user, chat_type", [("bob", "private"), ("", "normal")])
@pytest_twisted.inlineCallbacks
def test_word_without_chat_type_is_private_to_an_account_or_to_the_lobby(server, rece_user, chat_type):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(word_bytes(send_user="alice", rece_user=rece_user, content="guess"))
    message = yield bob.next("word")
    assert (message["chat_type"], message["content"]) == (chat_type, "guess")


@pytest_twisted.inlineCallbacks
def test_word_without_chat_type_to_no_account_or_group_is_an_unknown_recipient(server):
    alice, = yield server.logged_in("alice")
    alice.send_raw(word_bytes(send_user="alice", rece_user="nobody", content="x"))
    reply = yield alice.next("word")
    assert reply == {"message_type": "word", "content": "fail", "reason": "unknown recipient"}


@pytest_twisted.inlineCallbacks
def test_unknown_chat_type_names_the_ones_to_send(server):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(word_bytes(chat_type="whisper", send_user="alice", rece_user="bob", content="x"))
    reply = yield alice.next("word")
    assert reply["reason"] == "unknown chat_type: send private or normal"


@pytest_twisted.inlineCallbacks
def test_send_message_is_word_and_send_user_may_be_left_out(server):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(b'{"message_type":"send_message","chat_type":"private","rece_user":"bob","content":"sm"}\n')
    message = yield bob.next("word")
    assert (message["send_user"], message["content"]) == ("alice", "sm")
    alice.send_raw(b'{"message_type":"send_message","chat_type":"private","rece_user":"nobody","content":"x"}\n')
    reply = yield alice.next("send_message")
    assert reply == {"message_type": "send_message", "content": "fail", "reason": "unknown recipient"}


# -- files ---------------------------------------------------------------------

def offer(receiver="bob", length=5, name="notes.txt", **extra):
    return line(json.dumps({"message_type": "file", "send_user": "alice", "rece_user": receiver,
                            "file_name": name, "file_length": length, **extra}))


def accept_exchange(port, answer):
    """alice offers b"hello" to bob, who accepts with ``answer`` (raw bytes):
    the bytes bob gets, and whether his connection is still in step."""
    a, b = BlockingJsonClient(port, newline=True), BlockingJsonClient(port, newline=True)
    a.login("alice")
    b.login("bob")
    a.sock.sendall(offer() + b"hello")
    offered = b.receive("file")
    assert offered["file_length"] == 5
    b.sock.sendall(answer.replace(b"%s", offered["file_id"].encode()))
    got = b.read_raw(b.receive("file-data")["file_length"])
    b.sock.sendall(REGISTER + b"\n")
    in_step = b.receive("register")["content"] == "success"
    a.close()
    b.close()
    return got, in_step


@pytest.mark.parametrize("answer", [
    b'{"message_type":"file","content":"accept","file_name":"notes.txt","file_length":5,"send_user":"alice"}\n',
    b'{"message_type":"file","content":"accept","file_name":"notes.txt","file_length":5,"send_user":"bob"}\n',
    b'{"message_type":"file","content":"accept","file_name":"notes.txt","send_user":"bob","rece_user":"alice"}\n',
    b'{"message_type":"file","content":"Accept","file_name":"notes.txt","file_length":"5"}\n',
    b'{"message_type":"file","content":"accept","file_id":"%s"}\n',
], ids=["seed", "send_user-is-receiver", "swapped", "no-names", "file_id-only"])
@pytest_twisted.inlineCallbacks
def test_accept_works_naming_either_party_or_none(server, answer):
    got, in_step = yield threads.deferToThread(accept_exchange, server.port, answer)
    assert got == b"hello" and in_step


@pytest_twisted.inlineCallbacks
def test_accept_naming_two_other_accounts_is_refused(server):
    alice, bob = yield server.logged_in("alice", "bob")
    bob.send_raw(b'{"message_type":"file","content":"accept","file_name":"a","send_user":"x","rece_user":"y"}\n')
    reply = yield bob.next("file")
    assert reply["reason"] == "send_user and rece_user name two other accounts: name the file's sender"


@pytest_twisted.inlineCallbacks
def test_offer_with_file_length_as_a_string_works(server):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(offer(length="5") + b"hello")
    notice = yield bob.next("file")
    assert (notice["file_name"], notice["file_length"]) == ("notes.txt", 5)
    yield answers_register(alice)


@pytest.mark.parametrize("word", ["reject", "refuse", "cancel"])
@pytest_twisted.inlineCallbacks
def test_file_with_content_reject_is_a_reject_and_swallows_nothing(server, word):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(offer() + b"hello")
    yield bob.next("file")
    bob.send_raw(line(json.dumps({"message_type": "file", "content": word, "file_name": "notes.txt",
                                  "file_length": 5, "send_user": "alice", "rece_user": "bob"})))
    notice = yield alice.next("reject")
    assert (notice["file_name"], notice["rece_user"]) == ("notes.txt", "bob")
    yield answers_register(bob)
    bob.send_raw(b'{"message_type":"file","content":"accept","file_name":"notes.txt","send_user":"alice"}\n')
    reply = yield bob.next("file")
    assert reply == {"message_type": "file", "content": "fail", "reason": "no such file"}


@pytest_twisted.inlineCallbacks
def test_reject_message_naming_the_sender_in_rece_user_works(server):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(offer() + b"hello")
    yield bob.next("file")
    bob.send_raw(b'{"message_type":"reject","file_name":"notes.txt","rece_user":"alice"}\n')
    notice = yield alice.next("reject")
    assert notice["file_name"] == "notes.txt"


@pytest_twisted.inlineCallbacks
def test_file_offer_before_login_is_refused_without_raw_mode(server):
    client = yield server.client()
    client.send_raw(offer(length=len(REGISTER) + 1) + REGISTER + b"\n")
    reply = yield client.next("file")
    assert reply == {"message_type": "file", "content": "fail", "reason": "not logged in"}
    reply = yield client.next("register")  # read as a request, not as file bytes
    assert reply == {"message_type": "register", "content": "success"}


@pytest.mark.parametrize("length, reason", [
    ("five", "wrong type for field: file_length (send the number of bytes)"),
    (-1, "wrong type for field: file_length (send the number of bytes)"),
])
@pytest_twisted.inlineCallbacks
def test_offer_with_an_unusable_file_length_is_refused_without_raw_mode(server, length, reason):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(offer(length=length))
    reply = yield alice.next("file")
    assert reply == {"message_type": "file", "content": "fail", "reason": reason}
    yield answers_register(alice)


@pytest_twisted.inlineCallbacks
def test_file_with_an_unknown_content_is_refused_without_raw_mode(server):
    alice, bob = yield server.logged_in("alice", "bob")
    alice.send_raw(offer(content="aGVsbG8="))
    reply = yield alice.next("file")
    assert reply["content"] == "fail" and reply["reason"].startswith("unknown content: an offer has none")
    yield answers_register(alice)


# -- property: no input leaves a connection deaf --------------------------------

VALID_REQUESTS = [
    REGISTER.replace(b"probe", b"someone"),
    b'{"message_type":"login","username":"someone","password":"x"}',
    b'{"message_type":"word","chat_type":"private","send_user":"a","rece_user":"b","content":"hi \\"there\\""}',
    b'{"message_type":"file","send_user":"a","rece_user":"b","file_name":"f","file_length":3}',
    b'{"message_type":"voice","content":"request","send_user":"a","rece_user":"b"}',
    b'{"message_type":"leave_message","username":"a"}',
]
PROBE = b'{"message_type":"update_online_user"}\n'  # answered "not logged in", whatever came before

mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.integers(0, 200), st.integers(1, 255),
              st.sampled_from([b"{", b"}", b'"', b"\\", b"\n"])),
    min_size=1, max_size=4,
)


def mutate(data, steps):
    for kind, position, mask, inserted in steps:
        position %= len(data) + 1
        if kind == "flip" and position < len(data):
            data = data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]
        elif kind == "cut":
            data = data[:position]
        elif kind == "insert":
            data = data[:position] + inserted + data[position:]
    return data


def probe_after(port, garbage):
    """A JSON connection gets a probe, ``garbage``, a newline and a probe
    again: True if it answers the second probe."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PROBE + garbage + b"\n" + PROBE)
        buffer, answered = b"", 0
        while answered < 2:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buffer += chunk
            *replies, buffer = buffer.split(b"\n")
            answered += sum(json.loads(reply)["message_type"] == "update_online_user" for reply in replies)
        return True


def check_mutations(port):
    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(VALID_REQUESTS), mutations)
    def connection_keeps_answering(request, steps):
        assert probe_after(port, mutate(request, steps))

    connection_keeps_answering()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_random_mutations_of_requests_never_leave_a_connection_deaf(server):
    yield threads.deferToThread(check_mutations, server.port)
