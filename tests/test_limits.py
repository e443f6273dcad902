"""Each message-server limit tripped through real sockets, while everyone
else keeps being served (docs/protocol.md "Limits")."""

import ftplib
import gc
import io
import json
import resource
import socket
import time

import psutil
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads
from twisted.python import usage

from bench.server import free_port, neochat
from neochat.services.limits import Limits, raise_descriptor_limit, total_connections
from neochat.tap import Options
from neochat.wire.headers import HeaderDecoder, HeaderMessage, encode_message
from tests.clients import BlockingJsonClient
from tests.conftest import Tripped

MIB = 1024 * 1024
SECOND_ADDRESS = "127.0.0.2"  # the loopback range: another address on this host (Linux)


def connect(port, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return sock


def read_to_close(sock):
    """Everything the server writes until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def send_quietly(sock, data):
    """Send what the server takes; it may close the connection midway."""
    try:
        sock.sendall(data)
    except OSError:
        pass


def json_error(reason):
    return json.dumps({"message_type": "error", "content": "fail", "reason": reason},
                      separators=(",", ":")).encode() + b"\n"


def header_error(stat, reason):
    return encode_message({"message_type": "error", "stat": str(stat), "reason": reason})


@defer.inlineCallbacks
def still_served(server, dialect="json", name="other"):
    """A new client logs in and is answered: the server still serves others."""
    client, = yield server.logged_in(name, dialect=dialect)
    client.send({"message_type": "ping"})
    assert (yield client.next("pong"))["message_type"] == "pong"
    return client


# -- deadlines ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_login_deadline_closes_connections_that_never_log_in(serve):
    server = await serve(login_timeout=1.0)
    tripped = Tripped()
    silent = connect(server.port)
    json_started = connect(server.port)
    json_started.sendall(b'{"message_type": "ping"}\n{"message_type": "login"')  # a ping, then half a login
    logged_in = await still_served(server)
    assert await threads.deferToThread(read_to_close, silent) == header_error(408, "login timeout")
    assert await threads.deferToThread(read_to_close, json_started) == (
        b'{"message_type":"pong"}\n' + json_error("login timeout"))
    logged_in.send({"message_type": "ping"})  # logged in before the deadline: not closed
    assert (await logged_in.next("pong"))["message_type"] == "pong"
    assert tripped["login_timeout"] == 2
    silent.close()
    json_started.close()


@pytest_twisted.ensureDeferred
async def test_idle_timeout_closes_a_silent_session_but_not_one_that_pings(serve, dialect):
    server = await serve(idle_timeout=1.0)
    tripped = Tripped()
    silent, pinging = await server.logged_in("silent", "pinging", dialect=dialect)
    pings = 0
    while not silent.closed.called and pings < 100:  # the timeout is 1 s: at most 10 s
        pinging.send({"message_type": "ping"})
        await pinging.next("pong")
        pings += 1
        await task.deferLater(reactor, 0.1, lambda: None)
    error = await silent.next("error")
    assert error.get("reason") == "idle timeout"
    assert silent.closed.called
    assert pings >= 5  # the pinging session outlived the silent one by far
    assert tripped["idle_timeout"] == 1
    pinging.send({"message_type": "ping"})
    await pinging.next("pong")


# -- frame sizes and bytes before login -----------------------------------------

@pytest_twisted.ensureDeferred
async def test_frames_before_login_are_small_and_skipped_in_step(serve):
    server = await serve()
    tripped = Tripped()
    header = await server.client("header")
    header.send({"message_type": "voice", "user_account": "x"}, b"v" * 9000)
    assert (await header.next("voice")) == {"message_type": "voice", "stat": "413",
                                            "reason": "body too large", "body": b""}
    await header.register_and_login("hana")  # the skipped body left the stream in step
    friend, = await server.logged_in("friend", dialect="header")
    # after login: a voice clip may be up to header_body, other bodies up to header_frame
    reply = await header.request({"message_type": "voice", "user_account": "hana", "friends": "friend"},
                                 b"v" * 300_000)
    assert reply["stat"] == "200"
    reply = await header.request({"message_type": "text", "user_account": "hana", "friends": "friend"},
                                 b"t" * 300_000)
    assert (reply["stat"], reply["reason"]) == ("413", "body too large")
    reply = await header.request({"message_type": "text", "user_account": "hana", "friends": "friend"},
                                 b"t" * 9000)
    assert reply["stat"] == "200"

    client = await server.client("json")
    padded_ping = {"message_type": "ping", "padding": "p" * 9000}
    client.send(padded_ping)
    assert (await client.next("error"))["reason"] == "message too long (limit 8192 bytes)"
    await client.register_and_login("jo")
    client.send(padded_ping)  # after login, objects up to json_object are read
    assert (await client.next("pong")) == {"message_type": "pong"}
    assert (tripped["frame_before_login"], tripped["header_frame"], tripped["json_object"]) == (2, 1, 0)


@pytest_twisted.ensureDeferred
async def test_a_payload_too_long_to_skip_is_refused_by_closing(serve, settings):
    settings.ftp.max_file_size = 100_000
    server = await serve(header_body=64 * 1024)
    tripped = Tripped()
    header, json_client = await server.logged_in("hana", dialect="header") + await server.logged_in("jo")
    header.send_raw(b"message_type: voice\nuser_account: hana\nfriends: jo\ncontent-length: 999999999\n\n")
    header.send_raw(b"v" * 100_000)
    assert await header.next("voice") == {"message_type": "voice", "stat": "413", "reason": "body too large",
                                          "body": b""}
    await header.closed
    json_client.send({"message_type": "file", "send_user": "jo", "rece_user": "hana", "file_name": "big.iso",
                      "file_length": 100_001})
    json_client.send_raw(b"f" * 100_001)
    assert await json_client.next("file") == {"message_type": "file", "content": "fail",
                                              "reason": "file_length must be 0 to 100000"}
    await json_client.closed
    await still_served(server)
    assert (tripped["header_body"], tripped["max_file_size"]) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_too_much_data_before_login_closes_the_connection(serve):
    server = await serve(bytes_before_login=16 * 1024)
    tripped = Tripped()
    sock = connect(server.port)
    request = encode_message({"message_type": "login", "user_account": "a", "user_password": "wrong"})
    await threads.deferToThread(send_quietly, sock, request * 1000)
    received = await threads.deferToThread(read_to_close, sock)
    assert received.endswith(header_error(413, "too much data before login"))
    assert tripped["bytes_before_login"] == 1
    sock.close()
    await still_served(server)


@pytest_twisted.ensureDeferred
async def test_twenty_connections_that_never_log_in_hold_little_memory(serve):
    """Each sends a 2 MiB header body or JSON object: refused before login,
    skipped as it arrives, never held."""
    server = await serve(bytes_before_login=0, login_timeout=0, connections_per_address=21)
    payload = b"x" * (2 * MIB)
    announced = encode_message({"message_type": "voice"}).rstrip(b"\n") + b"\ncontent-length: %d\n\n" % len(payload)
    opened = b'{"message_type": "word", "content": "'
    socks = [connect(server.port) for _ in range(20)]
    gc.collect()
    before = psutil.Process().memory_info().rss

    def flood(sock, start, end, replies):
        """Send it all, then a ping: its pong shows the server read every byte."""
        sock.sendall(start)
        sock.sendall(payload)
        sock.sendall(end)
        received = b""
        while received.count(b"\n" * replies) < 1 or b"pong" not in received:
            chunk = sock.recv(65536)
            assert chunk, "closed"
            received += chunk
        return received

    header_end = b"message_type: ping\n\n"
    json_end = b'"}\n{"message_type": "ping"}\n'
    replies = await defer.gatherResults([
        threads.deferToThread(flood, sock, announced, header_end, 2) if i % 2 else
        threads.deferToThread(flood, sock, opened, json_end, 1)
        for i, sock in enumerate(socks)])
    assert replies[1] == header_error(413, "body too large").replace(b"error", b"voice") + (
        b"message_type: pong\nstat: 200\n\n")
    assert replies[0] == json_error("message too long (limit 8192 bytes)") + b'{"message_type":"pong"}\n'
    await still_served(server)
    grown = psutil.Process().memory_info().rss - before
    assert grown < 8 * MIB, f"the server grew by {grown / MIB:.1f} MiB for 40 MiB sent"
    for sock in socks:
        sock.close()


# -- connections ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_flood_from_one_address_does_not_lock_out_another(serve):
    server = await serve(connections_per_address=3)
    tripped = Tripped()
    held = [connect(server.port) for _ in range(3)]
    over = connect(server.port)
    over.sendall(b'{"message_type": "login", "username": "a", "password": "b"}')
    assert await threads.deferToThread(read_to_close, over) == json_error("too many connections from your address")
    silent_over = connect(server.port)  # says nothing: answered in the header dialect after a grace second
    assert await threads.deferToThread(read_to_close, silent_over) == header_error(
        503, "too many connections from your address")
    assert tripped["connections_per_address"] == 2

    other = await threads.deferToThread(connect, server.port, SECOND_ADDRESS)
    other.sendall(b"message_type: ping\n\n")
    assert await threads.deferToThread(other.recv, 100) == b"message_type: pong\nstat: 200\n\n"
    held.pop().close()
    await task.deferLater(reactor, 0.2, lambda: None)
    await still_served(server)  # the freed slot is usable again
    for sock in held + [over, silent_over, other]:
        sock.close()


@pytest_twisted.ensureDeferred
async def test_the_total_cap_refuses_with_server_full(serve):
    server = await serve(connections_total=3, connections_per_address=0)
    tripped = Tripped()
    held = [connect(server.port) for _ in range(3)]
    over = connect(server.port)
    over.sendall(b"message_type: login\n")
    assert await threads.deferToThread(read_to_close, over) == header_error(503, "server full")
    assert tripped["connections_total"] == 1
    held.pop().close()
    await task.deferLater(reactor, 0.2, lambda: None)
    await still_served(server)
    for sock in held + [over]:
        sock.close()


def test_ftp_and_logins_work_while_a_flood_fills_the_chat_port():
    """A server process with 400 descriptors takes 200 chat connections
    (reserve: 256, at most half); 300 sockets from 15 addresses fill it,
    and FTP still logs in and stores a file."""
    ftp_port = free_port()

    def few_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))

    with neochat("--ftp", str(ftp_port), "--limit", "connections_per_address=20",
                 preexec_fn=few_descriptors) as (port, process):
        alice = BlockingJsonClient(port, newline=True)
        alice.login("alice", "pw")
        alice.close()
        flood = [connect(port, f"127.0.0.{n}") for n in range(1, 16) for _ in range(20)]
        late = connect(port, "127.0.0.16")
        late.sendall(b"message_type: ping\n\n")
        assert read_to_close(late) == header_error(503, "server full")
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", ftp_port, timeout=20)
        ftp.login("alice", "pw")
        assert ftp.storbinary("STOR note.txt", io.BytesIO(b"still here")).startswith("226")
        ftp.quit()
        assert process.num_fds() < 300  # the refused ones were closed
        for sock in flood[:20]:
            sock.close()
        time.sleep(0.5)
        alice = BlockingJsonClient(port, newline=True)
        alice.login("alice", "pw", register=False)  # a freed slot serves a login again
        alice.close()
        for sock in flood + [late]:
            sock.close()


def test_descriptor_limit_is_raised_and_a_reserve_kept():
    soft = raise_descriptor_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft
    assert total_connections(Limits(), 1024) == 768  # 256 kept for FTP, files, the database
    assert total_connections(Limits(), 100_000) == 95_000  # 5 % kept
    assert total_connections(Limits(connections_total=10), 1024) == 10


# -- rates --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_message_rate_pauses_a_fast_sender_and_drops_nothing(serve, dialect):
    server = await serve(messages_per_second=10, message_burst=4)
    fast, = await server.logged_in("fast", dialect=dialect)
    await task.deferLater(reactor, 0.5, lambda: None)  # the bucket refills after the login
    tripped = Tripped()
    started = time.monotonic()
    for _ in range(25):
        fast.send({"message_type": "ping"})
    other = await still_served(server)  # answered while the fast sender waits
    for _ in range(25):
        await fast.next("pong")
    # 4 at once, the other 21 at 10 per second: the bucket cannot run faster
    assert time.monotonic() - started >= 1.8
    assert tripped["messages_per_second"] >= 1
    other.close()


@pytest_twisted.ensureDeferred
async def test_byte_rate_pauses_a_fast_sender_and_drops_nothing(serve):
    server = await serve(bytes_per_second=32 * 1024, byte_burst=32 * 1024, messages_per_second=0)
    fast, = await server.logged_in("fast")
    await task.deferLater(reactor, 1.0, lambda: None)
    tripped = Tripped()
    started = time.monotonic()
    for _ in range(8):
        fast.send({"message_type": "ping", "padding": "p" * 16 * 1024})
    for _ in range(8):
        await fast.next("pong", timeout=30)
    # 128 KiB at 32 KiB/s with a 32 KiB burst
    assert time.monotonic() - started >= 2.5
    assert tripped["bytes_per_second"] >= 1 and tripped["messages_per_second"] == 0


# -- groups ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_group_size_limit_refuses_join_and_invite(serve, dialect):
    server = await serve(max_group_size=2)
    tripped = Tripped()
    owner, joiner, late = await server.logged_in("owner", "joiner", "late", dialect=dialect)
    assert (await owner.op("group_create", group_id="g"))[0]
    assert (await joiner.op("group_join", group_id="g"))[0]
    ok, reply = await late.op("group_join", group_id="g")
    assert not ok and reply["reason"] == "group full"
    if dialect == "header":
        assert reply["stat"] == "403"
    ok, reply = await owner.op("group_invite", group_id="g", member="late")
    assert not ok and reply["reason"] == "group full"
    assert (await joiner.op("group_leave", group_id="g"))[0]
    assert (await late.op("group_join", group_id="g"))[0]
    assert tripped["max_group_size"] == 2


# -- options ----------------------------------------------------------------------------

def test_limit_option_sets_any_limit():
    options = Options()
    options.parseOptions(["--limit", "idle_timeout=5", "--limit", "connections_per_address=3"])
    limits = options.settings().limits
    assert (limits.idle_timeout, limits.connections_per_address) == (5.0, 3)
    assert limits.login_timeout == Limits().login_timeout


@pytest.mark.parametrize("assignment", ["nonsense=1", "idle_timeout=-1", "json_object=0", "max_group_size=x"])
def test_limit_option_refuses_bad_values(assignment):
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--limit", assignment])
