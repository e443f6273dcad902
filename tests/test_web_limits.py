"""The message server's limits over WebSockets, each tripped through a real
socket while another WebSocket keeps being served (docs/protocol.md
"Limits"): a refusal is one JSON error, then a close frame of 4000 + stat."""

import time

import pytest_twisted
from twisted.internet import reactor, task, threads

from tests.conftest import Tripped
from tests.test_web_gateway import handshake
from tests.web_clients import WsClient


def error(reason):
    return {"message_type": "error", "content": "fail", "reason": reason}


async def still_served(server, name="other"):
    """A new WebSocket logs in and is answered."""
    ws = await WsClient.connect(server.http_port)
    await ws.register_and_login(name)
    return await pinged(ws)


async def pinged(ws):
    ws.send({"message_type": "ping"})
    assert await ws.next("pong") == {"message_type": "pong"}
    return ws


async def refused(ws, reason, code):
    await ws.closed
    assert (await ws.next("error")) == error(reason)
    assert ws.close_code == code


# -- deadlines ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_login_deadline_closes_a_websocket_that_never_logs_in(serve):
    server = await serve(login_timeout=1.0)
    tripped = Tripped()
    silent = await WsClient.connect(server.http_port)
    pinging = await WsClient.connect(server.http_port)
    await pinged(pinging)  # requests before login do not stop the clock
    logged_in = await still_served(server)
    await refused(silent, "login timeout", 4408)
    await refused(pinging, "login timeout", 4408)
    await pinged(logged_in)  # logged in before its deadline: not closed
    assert tripped["login_timeout"] == 2  # counted (neochat_limits_tripped_total) as on TCP


@pytest_twisted.ensureDeferred
async def test_idle_timeout_closes_a_silent_websocket_but_not_one_that_pings(serve):
    server = await serve(idle_timeout=1.0)
    silent = await still_served(server, "silent")
    pinging = await still_served(server, "pinging")
    pings = 0
    while not silent.closed.called and pings < 100:  # the timeout is 1 s: at most 10 s
        await pinged(pinging)
        pings += 1
        await task.deferLater(reactor, 0.1, lambda: None)
    await refused(silent, "idle timeout", 4408)
    assert pings >= 5  # the pinging session outlived the silent one by far
    await pinged(pinging)


# -- message sizes and bytes before login -------------------------------------

@pytest_twisted.ensureDeferred
async def test_messages_before_login_are_small_and_the_full_size_applies_after(serve):
    server = await serve()  # frame_before_login 8192, json_object 65536
    tripped = Tripped()
    ws = await WsClient.connect(server.http_port)
    padded_ping = {"message_type": "ping", "padding": "p" * 9000}
    ws.send(padded_ping)
    assert (await ws.next("error")) == error("message too long (limit 8192 bytes)")
    await ws.register_and_login("jo")  # the socket stays, in step
    ws.send(padded_ping)
    assert (await ws.next("pong")) == {"message_type": "pong"}
    ws.send({"message_type": "ping", "padding": "p" * 70000})
    assert (await ws.next("error")) == error("message too long (limit 65536 bytes)")
    await pinged(ws)
    assert (tripped["frame_before_login"], tripped["json_object"]) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_too_much_data_before_login_closes_the_websocket(serve):
    server = await serve(bytes_before_login=16 * 1024)
    other = await still_served(server)
    tripped = Tripped()
    chatty = await WsClient.connect(server.http_port)
    for _ in range(20):  # 20 KB of pings, each well under the frame limit
        chatty.send({"message_type": "ping", "padding": "p" * 1000})
    await refused(chatty, "too much data before login", 4413)
    assert len(chatty.of_type("pong")) < 17
    big = await WsClient.connect(server.http_port)  # one message longer than the cap: refused
    big.send({"message_type": "ping", "padding": "p" * 100_000})  # before it is whole
    await refused(big, "too much data before login", 4413)
    await pinged(other)
    assert tripped["bytes_before_login"] == 2


# -- rates --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_message_rate_paces_a_fast_websocket_and_drops_nothing(serve):
    server = await serve(messages_per_second=10, message_burst=4)
    fast = await still_served(server, "fast")
    await task.deferLater(reactor, 0.5, lambda: None)  # the bucket refills after the login
    started = time.monotonic()
    for _ in range(25):
        fast.send({"message_type": "ping"})
    await still_served(server)  # answered while the fast sender waits
    for _ in range(25):
        await fast.next("pong")
    # 4 at once, the other 21 at 10 per second: the bucket cannot run faster
    assert time.monotonic() - started >= 1.8


@pytest_twisted.ensureDeferred
async def test_byte_rate_paces_a_fast_websocket_and_drops_nothing(serve):
    server = await serve(bytes_per_second=32 * 1024, byte_burst=32 * 1024, messages_per_second=0)
    fast = await still_served(server, "fast")
    await task.deferLater(reactor, 1.0, lambda: None)
    started = time.monotonic()
    for _ in range(8):
        fast.send({"message_type": "ping", "padding": "p" * 16 * 1024})
    other = await still_served(server)
    for _ in range(8):
        await fast.next("pong", timeout=30)
    # 128 KiB at 32 KiB/s with a 32 KiB burst
    assert time.monotonic() - started >= 2.5
    await pinged(other)


# -- connection caps ----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_websockets_and_tcp_share_the_per_address_cap(serve):
    server = await serve(connections_per_address=2)
    for _ in range(3):  # refused handshakes hold no place
        refused_origin = await threads.deferToThread(handshake, server.http_port, "http://evil.example")
        assert " 403 " in refused_origin + " "
    tcp = await server.client()
    ws = await WsClient.connect(server.http_port)
    full = await threads.deferToThread(handshake, server.http_port, None)
    assert " 503 " in full + " "
    await ws.register_and_login("alice")  # the admitted ones work
    await ws.close()
    again = await WsClient.connect(server.http_port)  # its place is free again
    await again.register_and_login("bob")
    tcp.close()



@pytest_twisted.ensureDeferred
async def test_websockets_and_tcp_share_the_total_cap(serve):
    server = await serve(connections_total=2, connections_per_address=0)
    tcp = await server.client()
    ws = await WsClient.connect(server.http_port)
    full = await threads.deferToThread(handshake, server.http_port, None)
    assert " 503 " in full + " "
    await ws.register_and_login("alice")  # the admitted ones work
    await tcp.register_and_login("bob")
