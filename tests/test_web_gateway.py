"""The WebSocket gateway and the HTTP file endpoints, without a browser:
the same JSON dialect as the TCP port, the origin rule, tokens, read rights."""

import base64
import hashlib
import json
import socket
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from neochat.chat.admission import ADDRESS
from neochat.tap import Options
from neochat.web.gateway import MAX_MESSAGE
from tests.web_clients import WsClient, download, http, upload

MAX_FILE = 512 * 1024


@pytest.fixture
def settings(settings):
    settings.ftp.max_file_size = MAX_FILE
    settings.http_origins = ["https://chat.example.org"]
    return settings


def handshake(port, origin, host=None):
    """The status line of a WebSocket opening handshake."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [
        "GET /ws HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    sock.close()
    return status


@pytest_twisted.inlineCallbacks
def test_origin_must_be_the_page_or_allowed(server):
    port = server.http_port
    refused = yield threads.deferToThread(handshake, port, "http://evil.example")
    assert " 403 " in refused + " "
    for origin in (f"http://127.0.0.1:{port}", "https://chat.example.org", None):
        accepted = yield threads.deferToThread(handshake, port, origin)
        assert " 101 " in accepted + " ", origin
    other_host = yield threads.deferToThread(handshake, port, f"http://127.0.0.1:{port}", "chat.example.net")
    assert " 403 " in other_host + " "


@pytest_twisted.inlineCallbacks
def test_a_banned_address_is_refused_at_the_handshake(server):
    admission = server.chat.accounts.admission
    admission.ban(ADDRESS, "127.0.0.0/8")
    refused = yield threads.deferToThread(handshake, server.http_port, None)
    assert " 403 " in refused + " "
    admission.unban(ADDRESS, "127.0.0.0/8")
    accepted = yield threads.deferToThread(handshake, server.http_port, None)
    assert " 101 " in accepted + " "


@pytest_twisted.inlineCallbacks
def test_bad_messages_get_errors_and_the_socket_keeps_working(server):
    ws = yield WsClient.connect(server.http_port)
    ws.send_text('{"message_type": "login", "username": ')  # cut short
    assert (yield ws.next("error")) == {"message_type": "error", "content": "fail", "reason": "malformed JSON"}
    ws.send_text("[1, 2]")
    assert (yield ws.next("error"))["reason"].startswith("not a JSON object")
    ws.send_text('{"message_type": "nonsense"}')
    assert (yield ws.next("error"))["reason"] == "unknown message_type"
    yield ws.register_and_login("alice")  # the next message is read as itself
    ws.send_text(json.dumps({"message_type": "word", "content": "x" * 70000}))
    assert (yield ws.next("error"))["reason"] == "message too long (limit 65536 bytes)"
    ws.send_text('{"message_type": "nonsense"}')
    assert (yield ws.next("error"))["reason"] == "unknown message_type"


@pytest_twisted.inlineCallbacks
def test_websocket_and_tcp_users_chat_with_receipts(server):
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice", acks=True)
    bob, = yield server.logged_in("bob")
    ws.send({"message_type": "word", "chat_type": "private", "send_user": "alice", "rece_user": "bob",
             "content": "你好 👋", "client_id": "c-1"})
    receipt = yield ws.next("word", reply=True)
    assert (receipt["content"], receipt["client_id"]) == ("success", "c-1")
    word = yield bob.next("word")
    assert (word["content"], word["id"]) == ("你好 👋", receipt["id"])
    bob.send({"message_type": "word", "chat_type": "private", "send_user": "bob", "rece_user": "alice",
              "content": "hi"})
    assert (yield ws.next("word"))["content"] == "hi"


@pytest_twisted.inlineCallbacks
def test_web_token_needs_a_login(server):
    ws = yield WsClient.connect(server.http_port)
    reply = yield ws.request({"message_type": "web_token"})
    assert (reply["content"], reply["reason"]) == ("fail", "not logged in")


@pytest_twisted.inlineCallbacks
def test_upload_without_a_valid_token_is_refused(server):
    port = server.http_port
    status, _, body = yield threads.deferToThread(upload, port, None, "a.txt", b"data")
    assert status == 401 and "web_token" in json.loads(body)["error"]
    status, _, _ = yield threads.deferToThread(upload, port, "made-up", "a.txt", b"data")
    assert status == 401
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    token = (yield ws.request({"message_type": "web_token"}))["token"]
    yield ws.close()  # the token ends with its session
    status, _, _ = yield threads.deferToThread(upload, port, token, "a.txt", b"data")
    assert status == 401
    status, _, body = yield threads.deferToThread(http, port, "POST", "/files", b"x", {"Authorization": "Bearer x"})
    assert status == 400 and json.loads(body)["error"] == "missing header: X-File-Name"


@pytest_twisted.inlineCallbacks
def test_too_large_upload_is_refused_and_leaves_nothing(server):
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    token = (yield ws.request({"message_type": "web_token"}))["token"]
    status, _, body = yield threads.deferToThread(upload, server.http_port, token, "big.bin", b"x" * (MAX_FILE + 1))
    assert status == 413 and "limit" in json.loads(body)["error"]
    files = server.root.files
    assert (yield files.readable_files("alice")) == []
    assert [p.name for p in files.directory.iterdir() if p.name != ".partial"] == []


@pytest_twisted.inlineCallbacks
def test_download_needs_the_right_to_read(server):
    port = server.http_port
    clients, tokens = {}, {}
    for name in ("alice", "bob", "carol"):
        clients[name] = client = yield WsClient.connect(port)
        yield client.register_and_login(name, acks=True)
        tokens[name] = (yield client.request({"message_type": "web_token"}))["token"]
    alice = clients["alice"]
    data = ("报告 📄 " * 20000).encode()
    status, _, body = yield threads.deferToThread(upload, port, tokens["alice"], "报告.txt", data)
    assert status == 201
    stored = json.loads(body)
    assert (stored["size"], stored["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    status, _, _ = yield threads.deferToThread(download, port, tokens["bob"], stored["name"])
    assert status == 403
    alice.send({"message_type": "word", "chat_type": "private", "send_user": "alice", "rece_user": "bob",
                "content": f"<file>{stored['name']}</file>", "client_id": "f-1"})
    yield alice.next("word", reply=True)
    status, headers, body = yield threads.deferToThread(download, port, tokens["bob"], stored["name"])
    assert status == 200 and body == data
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.txt"
    assert headers["Content-Type"] == "application/octet-stream"
    status, _, _ = yield threads.deferToThread(download, port, tokens["carol"], stored["name"])
    assert status == 403
    status, _, _ = yield threads.deferToThread(download, port, "", stored["name"])
    assert status == 401


@pytest_twisted.inlineCallbacks
def test_the_page_is_served(server):
    status, headers, body = yield threads.deferToThread(http, server.http_port, "GET", "/")
    assert status == 200 and b'<script type="module" src="app.js">' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]


@pytest_twisted.inlineCallbacks
def test_in_band_file_travels_as_binary_messages(server):
    payload = bytes(range(256)) * 1000
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    bob, = yield server.logged_in("bob")
    ws.send({"message_type": "file", "send_user": "alice", "rece_user": "bob",
             "file_name": "a.bin", "file_length": len(payload)})
    for start in range(0, len(payload), 100000):
        ws.send_raw(payload[start:start + 100000])
    offer = yield bob.next("file")
    assert (offer["file_name"], offer["file_length"]) == ("a.bin", len(payload))
    # And back: bob offers, the WebSocket user accepts and gets binary messages.
    bob.send({"message_type": "file", "send_user": "bob", "rece_user": "alice",
              "file_name": "b.bin", "file_length": len(payload)})
    bob.send_raw(payload)
    offer = yield ws.next("file")
    ws.send({"message_type": "file", "content": "accept", "file_name": "b.bin", "file_id": offer["file_id"]})
    header = yield ws.next("file-data")
    assert header["file_length"] == len(payload)
    ws.send({"message_type": "get_current_user"})
    yield ws.next("get_current_user")  # the socket reads JSON again after the bytes
    assert b"".join(ws.binary) == payload


def cut_off_upload(port, token, sent):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"POST /files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                  f"X-File-Name: cut.bin\r\nContent-Length: {sent * 4}\r\n\r\n").encode() + b"x" * sent)
    sock.close()


@pytest_twisted.inlineCallbacks
def test_an_upload_cut_off_leaves_nothing(server):
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    token = (yield ws.request({"message_type": "web_token"}))["token"]
    yield threads.deferToThread(cut_off_upload, server.http_port, token, 100000)
    # An upload after it (the server has seen the first connection go by then).
    status, _, body = yield threads.deferToThread(upload, server.http_port, token, "ok.txt", b"fine")
    assert status == 201
    files = server.root.files
    for _ in range(100):  # the partial file goes once the upload's setup is over
        if not list(files.partial_directory.iterdir()):
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    assert list(files.partial_directory.iterdir()) == []
    assert [row["name"] for row in (yield files.readable_files("alice"))] == [json.loads(body)["name"]]


@pytest_twisted.inlineCallbacks
def test_a_file_body_sent_elsewhere_is_not_kept(server):
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    token = (yield ws.request({"message_type": "web_token"}))["token"]
    headers = {"Authorization": f"Bearer {token}", "X-File-Name": "stray.txt"}
    status, _, _ = yield threads.deferToThread(http, server.http_port, "POST", "/", b"x" * 1000, headers)
    assert status == 405
    files = server.root.files
    assert list(files.partial_directory.iterdir()) == []
    assert (yield files.readable_files("alice")) == []


def test_http_is_off_unless_asked_for():
    options = Options()
    options.parseOptions([])
    assert options.settings().http == []
    options = Options()
    options.parseOptions(["--http", "tcp:8080:interface=127.0.0.1", "--http", "tcp:8081",
                          "--http-origin", "https://chat.example.org/"])
    settings = options.settings()
    assert settings.http == ["tcp:8080:interface=127.0.0.1", "tcp:8081"]
    assert settings.http_origins == ["https://chat.example.org"]


@pytest_twisted.inlineCallbacks
def test_an_oversized_message_closes_only_its_socket(server):
    big = yield WsClient.connect(server.http_port)
    other = yield WsClient.connect(server.http_port)
    yield big.register_and_login("alice")  # before login, bytes_before_login closes it first
    big.send_text(json.dumps({"message_type": "word", "content": "x" * 300000}))
    yield big.closed
    assert big.close_code == 1009  # message too big
    yield other.register_and_login("bob")


@pytest_twisted.inlineCallbacks
def test_a_flood_of_requests_is_answered_in_order_while_others_are_served(server):
    flood = yield WsClient.connect(server.http_port)
    yield flood.register_and_login("alice")
    other = yield WsClient.connect(server.http_port)
    # 40 requests of 60 KB (2.4 MB), each a database round trip.
    for n in range(40):
        flood.send({"message_type": "word", "chat_type": "private", "send_user": "alice",
                    "rece_user": f"nobody{n}", "content": "x" * 60000})
    yield other.register_and_login("bob")
    for n in range(40):
        reply = yield flood.next("word", reply=True)
        assert reply["reason"] == "unknown recipient", n


@pytest_twisted.inlineCallbacks
def test_a_socket_with_too_much_waiting_stops_being_read_until_it_drains(server):
    db = server.root.db
    if db.dialect.name != "sqlite":
        pytest.skip("holds SQLite's only pool connection to keep the requests waiting")
    flood = yield WsClient.connect(server.http_port)
    yield flood.register_and_login("alice")
    connection, = server.root.web_service.site.gateway.connections
    release = threading.Event()
    held = db.pool.runInteraction(lambda _: release.wait(20))
    # 2.4 MB waiting behind the first request, past the 1 MiB pause (room
    # messages run one at a time; private ones would overlap in the pipeline)
    for n in range(40):
        flood.send({"message_type": "word", "chat_type": "normal", "send_user": "alice",
                    "rece_user": f"nobody{n}", "content": "x" * 60000})
    for _ in range(200):
        if connection.transport not in reactor.getReaders():
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    assert connection.transport not in reactor.getReaders()  # paused
    release.set()
    yield held
    for n in range(40):
        reply = yield flood.next("word", reply=True)
        assert reply["reason"].startswith("unknown group"), n
    assert connection.transport in reactor.getReaders()  # reading again


@pytest_twisted.inlineCallbacks
def test_a_voice_clip_reaches_a_websocket_as_one_text_message(server):
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    bob, = yield server.logged_in("bob", dialect="header")
    # Streamed from the spool in 64 KiB pieces; base64 in JSON, within the 256 KiB WebSocket message.
    clip = bytes(range(256)) * 600 + b"end"
    reply = yield bob.request({"message_type": "voice", "user_account": "bob", "friends": "alice"}, clip)
    assert reply["stat"] == "200"
    notice = yield ws.next("voice")
    assert (notice["user_account"], base64.b64decode(notice["body"])) == ("bob", clip)
    bob.send({"message_type": "text", "user_account": "bob", "friends": "alice", "text": "after"})
    assert (yield ws.next("word"))["content"] == "after"


@pytest_twisted.inlineCallbacks
def test_a_voice_clip_too_large_for_a_websocket_is_refused_before_its_body(server):
    """Its base64 JSON would not fit in one WebSocket message: 413 at once,
    not a 200 for a clip that could never arrive; the sender stays in step."""
    ws = yield WsClient.connect(server.http_port)
    yield ws.register_and_login("alice")
    bob, = yield server.logged_in("bob", dialect="header")
    clip = b"x" * (MAX_MESSAGE * 3 // 4)
    reply = yield bob.request({"message_type": "voice", "user_account": "bob", "friends": "alice"}, clip)
    assert (reply["stat"], reply["reason"]) == (
        "413", f"voice clip too large for the friend's WebSocket (at most {MAX_MESSAGE} bytes of JSON)")
    assert list(server.chat.clips.directory.iterdir()) == []
    bob.send({"message_type": "text", "user_account": "bob", "friends": "alice", "text": "after"})
    assert (yield ws.next("word"))["content"] == "after"
    assert not ws.of_type("voice")
