"""Calls and voice clips between clients on different nodes of a 3-node
cluster (neochat/cluster/calls.py): the node that issued the key relays
both ways over real UDP."""

import pytest_twisted
from twisted.internet import defer, reactor

from neochat.services.relay import parse_fields
from neochat.wire.headers import encode_head
from tests.test_calls import A, B, header, voice
from tests.test_cluster import cluster, wait_until  # noqa: F401 (cluster is a fixture)
from tests.udp import LOCAL, UdpSockets, cell_address, media


@pytest_twisted.async_yield_fixture
async def udp():
    sockets = UdpSockets()
    yield sockets
    await sockets.close()


def no_calls_anywhere(cluster):
    return all(len(node.root.cell.registry) == 0 and not node.root.chat.calls._remote for node in cluster.nodes)


@defer.inlineCallbacks
def on_two_nodes(cluster, caller, callee, dialect="json"):
    """The caller on n0 and the callee on n1, each node knowing of both."""
    n0, n1, _ = cluster.nodes
    first, = yield n0.logged_in(caller, dialect=dialect)
    second, = yield n1.logged_in(callee, dialect=dialect)
    assert (yield wait_until(lambda: n0.root.router.is_online(callee) and n1.root.router.is_online(caller)))
    return first, second


@pytest_twisted.inlineCallbacks
def test_a_voice_call_between_nodes_is_relayed_by_the_callers_node(cluster, udp):
    n0, n1, _ = cluster.nodes
    alice, bob = yield on_two_nodes(cluster, "alice", "bob")
    alice.send(voice("request", send_user="alice", rece_user="bob"))
    request = yield bob.next("voice")
    call, = n0.root.cell.registry.calls_of("alice")
    assert (request["other_ip"], request["other_port"]) == (LOCAL, call.callee_leg.relay_port)
    assert len(n1.root.cell.registry) == 0  # n0 issued the key: its relay serves both
    bob_media = udp.party(request["your_port"])
    bob.send(voice("accept", send_user="alice", rece_user="bob"))
    accept = yield alice.next("voice")
    assert accept["content"] == "accept" and accept["other_port"] == call.caller_leg.relay_port
    alice_media = udp.party(accept["your_port"])

    alice_media.send_to_other(b"hello bob", accept)
    assert (yield bob_media.next()) == (b"hello bob", (request["other_ip"], request["other_port"]))
    bob_media.send_to_other(b"hello alice", request)
    assert (yield alice_media.next()) == (b"hello alice", (accept["other_ip"], accept["other_port"]))

    bob.send(voice("close"))
    assert (yield alice.next("voice")) == voice("close")
    assert (yield wait_until(lambda: no_calls_anywhere(cluster)))
    assert bob.of_type("voice") == []


@pytest_twisted.inlineCallbacks
def test_voice_answers_to_a_call_from_another_node_fail_as_on_one(cluster):
    n0, _, _ = cluster.nodes
    alice, bob = yield on_two_nodes(cluster, "alice", "bob")
    alice.send(voice("request", send_user="alice", rece_user="bob"))
    yield bob.next("voice")
    reply = yield bob.request(voice("accept", send_user="carol", rece_user="bob"))
    assert reply == voice("fail", reason="no_such_call")
    bob.send(voice("accept"))
    yield alice.next("voice")
    reply = yield bob.request(voice("accept"))
    assert reply == voice("fail", reason="bad_state")  # decided on n0, told on n1
    reply = yield alice.request(voice("request", send_user="alice", rece_user="nobody"))
    assert reply == voice("fail", reason="friend offline")
    bob.send(voice("reject"))  # after the accept: a hang-up
    assert (yield alice.next("voice")) == voice("close")
    assert (yield wait_until(lambda: no_calls_anywhere(cluster)))


@pytest_twisted.inlineCallbacks
def test_a_callee_dropping_on_its_node_ends_the_call_on_the_callers(cluster):
    alice, bob = yield on_two_nodes(cluster, "alice", "bob")
    alice.send(voice("request", send_user="alice", rece_user="bob"))
    yield bob.next("voice")
    bob.send(voice("accept"))
    yield alice.next("voice")
    bob.close()
    assert (yield alice.next("voice")) == voice("close", reason="disconnected")
    assert (yield wait_until(lambda: no_calls_anywhere(cluster)))


@pytest_twisted.inlineCallbacks
def test_a_callee_busy_on_its_own_node_is_busy_for_a_caller_elsewhere(cluster):
    n0, n1, n2 = cluster.nodes
    alice, bob = yield on_two_nodes(cluster, "alice", "bob")
    carol, dave = yield defer.gatherResults([n1.logged_in("carol"), n2.logged_in("dave")])
    carol, dave = carol[0], dave[0]
    assert (yield wait_until(lambda: n2.root.router.is_online("bob")))
    for caller in (carol, alice):  # one call on bob's node, one from n0: his two
        caller.send(voice("request", rece_user="bob"))
        yield bob.next("voice")
    reply = yield dave.request(voice("request", rece_user="bob"))
    assert reply == voice("fail", reason="busy")
    assert len(n2.root.cell.registry) == 0


@pytest_twisted.inlineCallbacks
def test_a_keyed_call_between_nodes_goes_through_the_issuing_nodes_cell_port(cluster, udp):
    n0, n1, _ = cluster.nodes
    a, b = yield on_two_nodes(cluster, A, B, dialect="header")
    key = (yield a.request(header("call_key", A, friends=B)))["connection_key"]
    reply = yield a.request(header("videocall", A, friends=B, cell_key=key))
    assert reply["stat"] == "200"
    ring = yield b.next("videocall")
    cell = cell_address(n0.root.cell)
    assert (ring["user_account"], ring["cell_key"]) == (A, key)
    assert (ring["cell_ip"], int(ring["cell_port"])) == cell  # where B sends its media
    reply = yield b.request(header("cell", B, cell_type="200", friends=A))
    assert reply["stat"] == "200"
    answer = yield a.next("cell")
    assert (answer["cell_type"], answer["cell_key"]) == ("200", key)

    a_media, b_media = udp.party(), udp.party()
    a_media.send(media(key, "A", b""), cell)
    yield wait_until(lambda: n0.root.cell.counters()["dropped_peer_unknown"] == 1)
    b_media.send(media(key, "B", b"hi A"), cell)
    assert (yield a_media.next()) == (media(key, "B", b"hi A"), cell)
    a_media.send(media(key, "A", b"hi B"), cell)
    assert (yield b_media.next()) == (media(key, "A", b"hi B"), cell)

    reply = yield b.request(header("cell", B, cell_type="404", friends=A))
    assert reply["stat"] == "200"
    ended = yield a.next("cell")
    assert (ended["cell_type"], ended["reason"]) == ("404", "closed")
    assert (yield wait_until(lambda: no_calls_anywhere(cluster)))


@pytest_twisted.inlineCallbacks
def test_a_keyed_call_to_another_node_rejected_there_tells_the_caller(cluster, udp):
    n0, _, _ = cluster.nodes
    a, b = yield on_two_nodes(cluster, A, B, dialect="header")
    asker = udp.party()  # the key from the caller's node's cell port, as the seed does
    asker.send(f"user_account: {A}\nfriends: {B}\n\n".encode(), cell_address(n0.root.cell))
    key = parse_fields((yield asker.next())[0])["connection_key"]
    yield a.request(header("call", A, friends=B, cell_key=key))
    yield b.next("call")
    reply = yield b.request(header("cell", B, cell_type="404", friends=A, cell_key="not-the-key"))
    assert (reply["stat"], reply["reason"]) == ("404", "no_such_call")
    reply = yield b.request(header("cell", B, cell_type="404", friends=A))
    assert reply["stat"] == "200"
    told = yield a.next("cell")
    assert (told["cell_type"], told["reason"]) == ("404", "rejected")
    assert (yield wait_until(lambda: no_calls_anywhere(cluster)))


@pytest_twisted.inlineCallbacks
def test_a_voice_clip_reaches_a_friend_on_another_node_up_to_the_limit(cluster):
    n0, _, _ = cluster.nodes
    a, b = yield on_two_nodes(cluster, A, B, dialect="header")
    n0.root.router.max_clip = 1000
    clip = bytes(range(256)) * 3
    reply = yield a.request(header("voice", A, friends=B), clip)
    assert reply["stat"] == "200"
    assert (yield b.next("voice"))["body"] == clip
    reply = yield a.request(header("voice", A, friends=B), clip * 2)
    assert (reply["stat"], reply["reason"]) == ("413", "voice clip too large to reach another node")
    reply = yield a.request(header("voice", A, friends=B), b"short")
    assert reply["stat"] == "200"
    assert (yield b.next("voice"))["body"] == b"short"
    yield b.close()
    assert (yield wait_until(lambda: not n0.root.router.is_online(B)))
    reply = yield a.request(header("voice", A, friends=B), b"short")
    assert (reply["stat"], reply["reason"]) == ("480", "friend offline")


@pytest_twisted.inlineCallbacks
def test_a_clip_to_a_friend_behind_on_another_node_waits_in_that_nodes_spool(cluster):
    """Its sender has its 200: the clip is not dropped while the friend is
    behind, but waits on disk on the friend's node, as a local clip would."""
    _, n1, _ = cluster.nodes
    a, b = yield on_two_nodes(cluster, A, B, dialect="header")
    session = n1.root.router.session_of(B)
    session.pause()  # as when B's connection is behind
    clips = [bytes([n]) * 700 for n in range(3)]
    for clip in clips:
        assert (yield a.request(header("voice", A, friends=B), clip))["stat"] == "200"
    spool = n1.root.chat.clips.directory
    assert (yield wait_until(lambda: len(list(spool.iterdir())) == 3))
    session.resume()
    for clip in clips:
        assert (yield b.next("voice"))["body"] == clip
    assert (yield wait_until(lambda: not list(spool.iterdir())))


@pytest_twisted.inlineCallbacks
def test_a_clip_too_large_to_cross_nodes_is_refused_before_its_body(cluster):
    n0, _, _ = cluster.nodes
    a, b = yield on_two_nodes(cluster, A, B, dialect="header")
    n0.root.router.max_clip = 1000
    a.send_raw(encode_head(header("voice", A, friends=B), 5000))  # the header lines only
    reply = yield a.next("voice", reply=True)
    assert (reply["stat"], reply["reason"]) == ("413", "voice clip too large to reach another node")
    a.send_raw(b"\x00" * 5000)  # read and dropped
    assert (yield a.request(header("voice", A, friends=B), b"short"))["stat"] == "200"
    assert (yield b.next("voice"))["body"] == b"short"
    assert not list(n0.root.chat.clips.directory.iterdir())


@pytest_twisted.inlineCallbacks
def test_a_callees_node_that_does_not_answer_fails_the_request_and_leaves_no_call(cluster):
    n0, n1, _ = cluster.nodes
    alice, bob = yield on_two_nodes(cluster, "alice", "bob")
    n0.root.router.asking.timeout = 0.5
    n1.root.router.answer("call_ring", lambda node, **request: defer.Deferred())  # n1 hangs
    reply = yield alice.request(voice("request", rece_user="bob"))
    assert reply == voice("fail", reason="node n1 did not answer")
    assert len(n0.root.cell.registry) == 0
    alice.send({"message_type": "word", "send_user": "alice", "rece_user": "bob", "content": "still served"})
    assert (yield bob.next("word"))["content"] == "still served"


def test_the_clip_limit_option_reaches_the_router():
    from neochat.services.root import cluster_router
    from neochat.tap import Options

    options = Options()
    options.parseOptions(["--cluster", "redis://127.0.0.1:6379/3", "--cluster-max-clip", "8"])
    assert cluster_router(options.settings(), reactor).max_clip == 8 * 1024
