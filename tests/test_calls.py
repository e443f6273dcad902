"""Call signalling end to end: clients of both seeds on the real server, media
over real UDP sockets through the cell server, on SQLite and MariaDB."""

import dataclasses

import pytest
import pytest_twisted

from neochat.services.relay import parse_fields
from tests.udp import LOCAL, UdpSockets, cell_address, media, port_is_free, wait_for

VOICE_FIELDS = {"message_type", "content", "send_user", "rece_user", "other_ip", "other_port", "your_ip", "your_port"}
A, B = "+86101", "+8200001"  # the seed-002 accounts


@pytest.fixture
def voice_mode():
    return "relay"


@pytest.fixture
def settings(settings, voice_mode):
    settings.voice_mode = voice_mode
    return settings


@pytest_twisted.async_yield_fixture
async def udp():
    sockets = UdpSockets()
    yield sockets
    await sockets.close()


def voice(content, **fields):
    return {"message_type": "voice", "content": content, **fields}


def header(message_type, sender, **fields):
    return {"user_account": sender, "message_type": message_type, **fields}


def relay_ports(server):
    return [port for call in server.root.cell.registry.calls_of("alice")
            for port in (call.caller_leg.relay_port, call.callee_leg.relay_port)]


async def assert_no_calls_left(server, ports=()):
    cell = server.root.cell
    assert len(cell.registry) == 0
    await cell.wait_ports_closed()
    assert all(port_is_free(port) for port in ports)


async def ringing_voice_call(server):
    """alice calls bob (seed 000); returns both clients and bob's request."""
    alice, bob = await server.logged_in("alice", "bob")
    alice.send(voice("request", send_user="alice", rece_user="bob"))
    return alice, bob, await bob.next("voice")


async def accepted_voice_call(server):
    """bob accepts; returns both clients, bob's request and alice's accept."""
    alice, bob, request = await ringing_voice_call(server)
    bob.send(voice("accept", send_user="alice", rece_user="bob"))
    return alice, bob, request, await alice.next("voice")


# Seed 000: voice


@pytest_twisted.ensureDeferred
async def test_seed_000_voice_call_relays_both_ways_and_keeps_strangers_out(server, udp):
    alice, bob, request = await ringing_voice_call(server)
    assert set(request) == VOICE_FIELDS
    assert request["content"] == "request" and (request["send_user"], request["rece_user"]) == ("alice", "bob")
    assert request["your_ip"] == request["other_ip"] == LOCAL  # the TCP peer; the cell interface
    bob_media = udp.party(request["your_port"])
    bob.send(voice("accept", send_user="alice", rece_user="bob"))
    accept = await alice.next("voice")
    assert set(accept) == VOICE_FIELDS and accept["content"] == "accept"
    assert (accept["send_user"], accept["rece_user"]) == ("alice", "bob")
    alice_media = udp.party(accept["your_port"])

    alice_media.send_to_other(b"hello bob", accept)
    assert await bob_media.next() == (b"hello bob", (request["other_ip"], request["other_port"]))
    bob_media.send_to_other(b"hello alice", request)
    assert await alice_media.next() == (b"hello alice", (accept["other_ip"], accept["other_port"]))

    stranger = udp.party()
    stranger.send_to_other(b"injected", accept)
    stranger.send_to_other(b"injected", request)
    alice_media.send_to_other(b"genuine", accept)
    assert (await bob_media.next())[0] == b"genuine"
    await wait_for(lambda: server.root.cell.counters()["dropped_wrong_source"] == 2)
    assert not (alice_media.inbox.pending or bob_media.inbox.pending or stranger.inbox.pending)

    ports = relay_ports(server)
    alice.send({"message_type": "voice", "content": "close"})
    assert await bob.next("voice") == {"message_type": "voice", "content": "close"}
    await assert_no_calls_left(server, ports)
    assert alice.of_type("voice") == []


@pytest_twisted.ensureDeferred
async def test_voice_reject_tells_the_caller_and_frees_the_relay_ports(server):
    alice, bob, request = await ringing_voice_call(server)
    ports = relay_ports(server)
    bob.send(voice("reject", send_user="alice", rece_user="bob"))
    assert await alice.next("voice") == voice("reject", send_user="alice", rece_user="bob")
    await assert_no_calls_left(server, ports)


@pytest_twisted.ensureDeferred
async def test_voice_request_to_someone_offline_or_to_yourself_fails(server):
    alice, = await server.logged_in("alice")
    reply = await alice.request(voice("request", send_user="alice", rece_user="carol"))
    assert reply == voice("fail", reason="friend offline")
    reply = await alice.request(voice("request", send_user="alice", rece_user="alice"))
    assert reply == voice("fail", reason="bad_request")
    await assert_no_calls_left(server)


@pytest_twisted.ensureDeferred
async def test_only_the_callee_can_accept(server):
    alice, bob, request = await ringing_voice_call(server)
    carol, = await server.logged_in("carol")
    refusals = [
        (alice, voice("accept", send_user="bob", rece_user="alice"), "not_party"),
        (carol, voice("accept", send_user="alice", rece_user="carol"), "no_such_call"),
        (bob, voice("accept", send_user="carol", rece_user="bob"), "no_such_call"),
        (carol, voice("close", send_user="alice", rece_user="bob"), "no_such_call"),
    ]
    for client, message, reason in refusals:
        assert await client.request(message) == voice("fail", reason=reason)
    assert server.root.cell.registry.calls_of("alice")[0].state == "requested"
    assert alice.of_type("voice") == []


@pytest.mark.parametrize("names", [
    {"send_user": "alice", "rece_user": "bob"},  # the seed's order
    {"send_user": "bob", "rece_user": "alice"},  # the callee as the sender of the accept
    {"rece_user": "alice"},
    {},  # the server knows the pending call
])
@pytest_twisted.ensureDeferred
async def test_callee_accepts_naming_the_parties_in_either_order_or_not_at_all(server, names):
    alice, bob, request = await ringing_voice_call(server)
    bob.send(voice("accept", **names))
    accept = await alice.next("voice")
    assert (accept["content"], accept["send_user"], accept["rece_user"]) == ("accept", "alice", "bob")
    assert server.root.cell.registry.calls_of("alice")[0].state == "accepted"


@pytest.mark.parametrize("names", [{}, {"send_user": "bob", "rece_user": "alice"}])
@pytest_twisted.ensureDeferred
async def test_callee_closing_before_answering_reaches_the_caller_as_close(server, names):
    alice, bob, request = await ringing_voice_call(server)
    ports = relay_ports(server)
    bob.send(voice("close", **names))
    assert await alice.next("voice") == voice("close")
    await assert_no_calls_left(server, ports)


@pytest.mark.parametrize("content", ["reject", "CLOSE"])
@pytest_twisted.ensureDeferred
async def test_caller_cancelling_with_reject_or_close_in_any_case_reaches_the_callee_as_close(server, content):
    alice, bob, request = await ringing_voice_call(server)
    alice.send(voice(content, send_user="alice", rece_user="bob"))
    assert await bob.next("voice") == voice("close")
    await assert_no_calls_left(server)


@pytest.mark.parametrize("leave, reason", [("logout", "logout"), ("drop", "disconnected")])
@pytest_twisted.ensureDeferred
async def test_callee_going_offline_ends_the_call_for_the_caller(server, leave, reason):
    alice, bob, request, accept = await accepted_voice_call(server)
    ports = relay_ports(server)
    if leave == "logout":
        bob.send({"message_type": "leave_message", "username": "bob"})
    else:
        bob.close()
    assert await alice.next("voice") == voice("close", reason=reason)
    await assert_no_calls_left(server, ports)


@pytest_twisted.ensureDeferred
async def test_unanswered_voice_request_times_out_for_both(server):
    registry = server.root.cell.registry
    registry.limits = dataclasses.replace(registry.limits, request_timeout=0.2)
    alice, bob, request = await ringing_voice_call(server)
    ports = relay_ports(server)
    for client in (alice, bob):
        assert await client.next("voice") == voice("close", reason="timeout")
    await assert_no_calls_left(server, ports)


@pytest.mark.parametrize("voice_mode", ["p2p"])
@pytest_twisted.ensureDeferred
async def test_p2p_mode_hands_out_the_peers_own_addresses(server):
    alice, bob, request, accept = await accepted_voice_call(server)
    assert (request["other_ip"], request["other_port"]) == (accept["your_ip"], accept["your_port"])
    assert (accept["other_ip"], accept["other_port"]) == (request["your_ip"], request["your_port"])
    assert relay_ports(server) == [None, None]


# Seed 002: call, videocall, cell


@pytest_twisted.ensureDeferred
async def test_seed_002_call_through_the_keyed_relay_both_ways_and_hang_up(server, udp):
    a, b = await server.logged_in(A, B, dialect="header")
    reply = await a.request(header("call_key", A, friends=B))
    assert reply["stat"] == "200"
    key = reply["connection_key"]
    reply = await a.request(header("call", A, friends=B, cell_key=key))
    assert reply["stat"] == "200"
    ring = await b.next("call")
    assert (ring["user_account"], ring["cell_key"]) == (A, key)
    reply = await b.request(header("cell", B, cell_type="200", friends=A))
    assert reply["stat"] == "200"
    answer = await a.next("cell")
    assert {name: answer[name] for name in ("user_account", "cell_type", "friends", "cell_key")} == {
        "user_account": A, "cell_type": "200", "friends": B, "cell_key": key}

    cell = cell_address(server.root.cell)
    a_media, b_media, stranger = udp.party(), udp.party(), udp.party()
    a_media.send(media(key, "A", b""), cell)  # latches A; B has not sent yet
    await wait_for(lambda: server.root.cell.counters()["dropped_peer_unknown"] == 1)
    b_media.send(media(key, "B", b"hi A"), cell)
    assert await a_media.next() == (media(key, "B", b"hi A"), cell)
    a_media.send(media(key, "A", b"hi B"), cell)
    assert await b_media.next() == (media(key, "A", b"hi B"), cell)

    stranger.send(media(key, "A", b"stolen key"), cell)
    stranger.send(media("x" * len(key), "B", b"guessed key"), cell)
    a_media.send(media(key, "A", b"genuine"), cell)
    assert (await b_media.next())[0] == media(key, "A", b"genuine")
    counters = server.root.cell.counters
    await wait_for(lambda: counters()["dropped_wrong_source"] == 1 and counters()["dropped_unknown_key"] == 1)
    assert not (a_media.inbox.pending or b_media.inbox.pending or stranger.inbox.pending)

    reply = await b.request(header("cell", B, cell_type="404", friends=A))
    assert reply["stat"] == "200"
    ended = await a.next("cell")
    assert (ended["cell_type"], ended["friends"], ended["cell_key"], ended["reason"]) == ("404", B, key, "closed")
    await assert_no_calls_left(server)
    assert b.of_type("cell") == []


@pytest_twisted.ensureDeferred
async def test_seed_002_key_from_the_cell_port_then_reject_tells_the_caller(server, udp):
    a, b = await server.logged_in(A, B, dialect="header")
    a_media = udp.party()
    a_media.send(f"user_account: {A}\nfriends: {B}\n\n".encode(), cell_address(server.root.cell))
    key = parse_fields((await a_media.next())[0])["connection_key"]
    await a.request(header("call", A, friends=B, cell_key=key))
    await b.next("call")
    reply = await b.request(header("cell", B, cell_type="404", friends=A))
    assert reply["stat"] == "200"
    told = await a.next("cell")
    assert {name: told[name] for name in ("user_account", "cell_type", "friends", "reason")} == {
        "user_account": A, "cell_type": "404", "friends": B, "reason": "rejected"}
    await assert_no_calls_left(server)


@pytest_twisted.ensureDeferred
async def test_seed_002_call_errors(server):
    a, b, c = await server.logged_in(A, B, "+8300002", dialect="header")
    key = (await a.request(header("call_key", A, friends=B)))["connection_key"]
    await a.request(header("call", A, friends=B, cell_key=key))
    await b.next("call")
    refusals = [
        (a, header("call", A, friends=B, cell_key="no-such-key"), "404", "no_such_call"),
        (b, header("call", B, friends=A, cell_key=key), "403", "not_party"),
        (c, header("call", "+8300002", friends=B, cell_key=key), "403", "not_party"),
        (a, header("cell", A, cell_type="200", friends=B), "403", "not_party"),  # only the callee accepts
        (c, header("cell", "+8300002", cell_type="200", friends=A), "404", "no_such_call"),
        (a, header("call_key", A, friends=B, call_type="fax"), "400", "bad_request"),
    ]
    for client, message, stat, reason in refusals:
        reply = await client.request(message)
        assert (reply["stat"], reply["reason"]) == (stat, reason), message
    assert len(server.root.cell.registry) == 1

    await c.close()
    key = (await a.request(header("call_key", A, friends="+8300002")))["connection_key"]
    reply = await a.request(header("call", A, friends="+8300002", cell_key=key))
    assert (reply["stat"], reply["reason"]) == ("480", "friend offline")
    assert server.root.cell.registry.get(key) is None


@pytest_twisted.ensureDeferred
async def test_a_key_no_call_message_used_cannot_be_answered_and_expires_silently(server, udp):
    registry = server.root.cell.registry
    registry.limits = dataclasses.replace(registry.limits, request_timeout=0.2)
    a, b = await server.logged_in(A, B, dialect="header")
    stranger = udp.party()  # anyone may ask the cell port for a key in A's name
    stranger.send(f"user_account: {A}\nfriends: {B}\n\n".encode(), cell_address(server.root.cell))
    await stranger.next()
    reply = await b.request(header("cell", B, cell_type="200", friends=A))
    assert (reply["stat"], reply["reason"]) == ("404", "no_such_call")
    await wait_for(lambda: len(registry) == 0)
    for client in (a, b):
        await client.request({"message_type": "dance"})  # a round trip: anything sent before has arrived
        assert client.of_type("cell") == []


@pytest_twisted.ensureDeferred
async def test_dropped_connection_ends_a_videocall_and_tells_the_other_party(server):
    a, b = await server.logged_in(A, B, dialect="header")
    key = (await a.request(header("call_key", A, friends=B, call_type="videocall")))["connection_key"]
    await a.request(header("videocall", A, friends=B, cell_key=key))
    assert (await b.next("videocall"))["cell_key"] == key
    await b.request(header("cell", B, cell_type="200", friends=A))
    await a.next("cell")
    assert server.root.cell.registry.get(key).max_datagram == 8192  # video limits
    a.close()
    told = await b.next("cell")
    assert (told["user_account"], told["friends"], told["cell_type"], told["reason"]) == (B, A, "404", "disconnected")
    await assert_no_calls_left(server)
