"""The cell server: call registry, seed-000 relay/p2p voice calls, seed-002 keyed relay.

Real UDP sockets on 127.0.0.1; registry timers run on a task.Clock.
"""

import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from neochat.chat.calls import ACCEPTED, CLOSED, CallError, CallLimits, CallRegistry, MediaCaps
from neochat.services.cell import UDP_BUFFER, CellService, PortRange
from neochat.services.relay import RelayPortProtocol, parse_fields
from tests.udp import LOCAL, UdpSockets, cell_address, free_port_range, media, port_is_free, wait_for

ALICE, BOB, CAROL = "+86101", "+8200001", "+8300002"
KEY_REQUEST = b"user_account: +86101\nfriends: +8200001\n\n"


class Net(UdpSockets):
    """Services and client sockets of one test, all closed at teardown."""

    def __init__(self):
        super().__init__()
        self.clock = task.Clock()
        self.ended = []
        self.services = []

    def cell(self, mode="relay", limits=None):
        registry = CallRegistry(limits or CallLimits(), self.clock)
        registry.on_call_ended = lambda call, reason: self.ended.append((call, reason))
        cell = CellService(registry, interface=LOCAL, port=0, relay_ports=(0, 0),
                           client_ports=free_port_range(8), mode=mode, reactor=reactor)
        cell.startService()
        self.services.append(cell)
        return cell

    async def close(self):
        for cell in self.services:
            if cell.running:
                await cell.stopService()
        await super().close()


@pytest_twisted.async_yield_fixture
async def net():
    net = Net()
    yield net
    await net.close()


def accepted_voice_call(cell, caller=ALICE, callee=BOB):
    call = cell.start_voice_call(caller, callee, LOCAL, LOCAL)
    cell.registry.accept(call.key, callee)
    return call, cell.party_addresses(call.key, caller), cell.party_addresses(call.key, callee)


def keyed_call(registry, caller, callee, kind="call"):
    """A key as the cell port gives it, claimed as the caller's ``call`` message does."""
    return registry.claim(registry.request_key(caller, callee, kind), caller, callee)


def accept_key(cell, key, caller=ALICE, callee=BOB):
    cell.registry.claim(key, caller, callee)
    return cell.registry.accept(key, callee)


def relay_ports_of(call):
    return [call.caller_leg.relay_port, call.callee_leg.relay_port]


# The registry on its own


def test_keys_are_random_and_do_not_name_the_accounts():
    registry = CallRegistry(clock=task.Clock())
    first = registry.request_key(ALICE, BOB)
    second = registry.request_key(ALICE, CAROL)
    assert first != second
    assert len(first) >= 22  # token_urlsafe(16): 128 bits
    assert "86101" not in first and "8200001" not in first


def test_only_the_callee_can_accept_and_only_once():
    registry = CallRegistry(clock=task.Clock())
    call = keyed_call(registry, ALICE, BOB)
    with pytest.raises(CallError, match="not_party"):
        registry.accept(call.key, ALICE)
    assert registry.accept(call.key, BOB).state == ACCEPTED
    with pytest.raises(CallError, match="bad_state"):
        registry.accept(call.key, BOB)
    with pytest.raises(CallError, match="no_such_call"):
        registry.accept("no-such-key", BOB)


def test_outsider_cannot_close_a_call():
    registry = CallRegistry(clock=task.Clock())
    call = keyed_call(registry, ALICE, BOB)
    with pytest.raises(CallError, match="not_party"):
        registry.close(call.key, "closed", by_account=CAROL)
    assert registry.close(call.key, "rejected", by_account=BOB) is call
    assert registry.close(call.key) is None


@pytest.mark.parametrize("caller, callee, kind", [(ALICE, ALICE, "call"), (ALICE, BOB, "fax"), ("", BOB, "call")])
def test_bad_call_requests_are_refused(caller, callee, kind):
    registry = CallRegistry(clock=task.Clock())
    with pytest.raises(CallError, match="bad_request") as error:
        registry.request_key(caller, callee, kind)
    assert error.value.stat == 400


def test_third_call_of_a_user_is_busy_either_side():
    registry = CallRegistry(clock=task.Clock())
    keyed_call(registry, ALICE, BOB)
    keyed_call(registry, CAROL, ALICE)
    with pytest.raises(CallError, match="busy") as error:
        keyed_call(registry, ALICE, "+1")
    assert error.value.stat == 486
    with pytest.raises(CallError, match="busy"):
        keyed_call(registry, "+1", ALICE)


def test_total_call_limit_reports_server_full():
    registry = CallRegistry(CallLimits(max_calls_total=1), task.Clock())
    keyed_call(registry, ALICE, BOB)
    with pytest.raises(CallError, match="server_full"):
        keyed_call(registry, CAROL, "+1")


def test_find_call_finds_the_call_between_two_accounts_either_way():
    registry = CallRegistry(clock=task.Clock())
    call = keyed_call(registry, ALICE, BOB)
    assert registry.find_call(BOB, ALICE) is call
    assert registry.find_call(ALICE, CAROL) is None


# Seed 000: relay mode


@pytest_twisted.ensureDeferred
async def test_relay_mode_carries_datagrams_to_the_other_party_both_ways(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])

    alice.send_to_other(b"hello bob", alice_fields)
    assert await bob.next() == (b"hello bob", (bob_fields["other_ip"], bob_fields["other_port"]))
    bob.send_to_other(b"hello alice", bob_fields)
    assert await alice.next() == (b"hello alice", (alice_fields["other_ip"], alice_fields["other_port"]))
    assert cell.counters()["relayed_packets"] == 2


@pytest_twisted.ensureDeferred
async def test_many_relayed_calls_are_one_reactor_reader_and_leave_nothing_when_they_end(net):
    """Relay ports are read through one epoll of their own (RelayPoller):
    the reactor watches one reader however many calls there are."""
    cell = net.cell()

    def relay_readers():
        return [reader for reader in reactor.getReaders()
                if reader is cell.relay_poller or isinstance(getattr(reader, "protocol", None), RelayPortProtocol)]

    calls = [accepted_voice_call(cell, f"+8610{n}", f"+8620{n}") for n in range(3)]
    assert relay_readers() == [cell.relay_poller]
    parties = [(net.party(a["your_port"]), a, net.party(b["your_port"]), b) for _, a, b in calls]
    for n, (alice, alice_fields, bob, bob_fields) in enumerate(parties):
        alice.send_to_other(b"to bob %d" % n, alice_fields)
        bob.send_to_other(b"to alice %d" % n, bob_fields)
    for n, (alice, _, bob, _) in enumerate(parties):
        assert (await bob.next())[0] == b"to bob %d" % n
        assert (await alice.next())[0] == b"to alice %d" % n
    for call, _, _ in calls:
        cell.registry.close(call.key, "hangup")
    await cell.wait_ports_closed()
    assert relay_readers() == []
    for port in net.ports:  # the parties' client ports may be handed out again
        await port.stopListening()
    net.ports.clear()
    call, alice_fields, bob_fields = accepted_voice_call(cell)  # descriptors used again
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    alice.send_to_other(b"again", alice_fields)
    assert (await bob.next())[0] == b"again"


@pytest_twisted.ensureDeferred
async def test_relay_mode_hands_out_four_fields_per_party(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    assert alice_fields["other_ip"] == LOCAL and alice_fields["your_ip"] == LOCAL
    assert alice_fields["other_port"] == call.caller_leg.relay_port
    assert bob_fields["other_port"] == call.callee_leg.relay_port
    assert alice_fields["your_port"] != bob_fields["your_port"]  # same IP: distinct client ports


@pytest_twisted.ensureDeferred
async def test_relay_latches_onto_a_nat_rewritten_source_port(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice_home = net.party(alice_fields["your_port"])
    alice_behind_nat = net.party()  # her datagrams leave from another port
    bob = net.party(bob_fields["your_port"])

    alice_behind_nat.send_to_other(b"from nat", alice_fields)
    assert (await bob.next())[0] == b"from nat"
    bob.send_to_other(b"reply", bob_fields)
    assert (await alice_behind_nat.next())[0] == b"reply"
    assert call.caller_leg.latched == (LOCAL, alice_behind_nat.port)
    assert not alice_home.inbox.pending


@pytest_twisted.ensureDeferred
async def test_relay_third_party_can_neither_inject_nor_receive(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    mallory = net.party()
    alice.send_to_other(b"latch alice", alice_fields)
    await bob.next()
    bob.send_to_other(b"latch bob", bob_fields)
    await alice.next()

    mallory.send_to_other(b"injected", alice_fields)
    mallory.send_to_other(b"injected", bob_fields)
    alice.send_to_other(b"genuine", alice_fields)
    assert (await bob.next())[0] == b"genuine"
    await wait_for(lambda: cell.counters()["dropped_wrong_source"] == 2)
    assert not alice.inbox.pending and not bob.inbox.pending and not mallory.inbox.pending


@pytest_twisted.ensureDeferred
async def test_relay_port_cannot_be_latched_from_another_ip(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    mallory = net.party(interface="127.0.0.2")
    mallory.send_to_other(b"hijack", alice_fields)
    await wait_for(lambda: cell.counters()["dropped_wrong_source"] == 1)
    assert call.caller_leg.latched is None


@pytest_twisted.ensureDeferred
async def test_voice_call_with_a_host_name_for_ip_is_refused_and_leaves_nothing(net):
    cell = net.cell()
    with pytest.raises(CallError, match="bad_request"):
        cell.start_voice_call(ALICE, BOB, LOCAL, "bob.example")
    assert len(cell.registry) == 0 and net.ended == []
    await cell.wait_ports_closed()


@pytest_twisted.ensureDeferred
async def test_a_peer_address_the_socket_cannot_reach_is_counted_and_others_still_relay(net):
    cell = net.cell()
    unreachable = cell.start_voice_call(CAROL, BOB, LOCAL, "::1")  # an IPv6 callee, IPv4 relay ports
    cell.registry.accept(unreachable.key, BOB)
    carol_fields = cell.party_addresses(unreachable.key, CAROL)
    net.party(carol_fields["your_port"]).send_to_other(b"to nowhere", carol_fields)
    await wait_for(lambda: cell.counters()["dropped_send_failed"] == 1)

    call, alice_fields, bob_fields = accepted_voice_call(cell, ALICE, "+8400004")
    bob = net.party(bob_fields["your_port"])
    net.party(alice_fields["your_port"]).send_to_other(b"still relayed", alice_fields)
    assert (await bob.next())[0] == b"still relayed"
    assert cell.counters()["relayed_packets"] == 1


@pytest_twisted.ensureDeferred
async def test_relay_drops_media_before_accept(net):
    cell = net.cell()
    call = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)
    alice_fields, bob_fields = cell.party_addresses(call.key, ALICE), cell.party_addresses(call.key, BOB)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    alice.send_to_other(b"too early", alice_fields)
    await wait_for(lambda: cell.counters()["dropped_not_accepted"] == 1)
    assert not bob.inbox.pending and call.caller_leg.latched is None


@pytest_twisted.ensureDeferred
async def test_oversize_datagram_is_dropped(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    alice.send_to_other(b"x" * 1401, alice_fields)
    alice.send_to_other(b"y" * 1400, alice_fields)
    assert (await bob.next())[0] == b"y" * 1400
    await wait_for(lambda: cell.counters()["dropped_oversize"] == 1)


@pytest_twisted.ensureDeferred
async def test_packets_over_the_rate_cap_are_dropped(net):
    limits = CallLimits(audio=MediaCaps(max_datagram=1400, packets_per_second=3, bytes_per_second=64_000))
    cell = net.cell(limits=limits)
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    for number in range(5):
        alice.send_to_other(b"%d" % number, alice_fields)
    assert [(await bob.next())[0] for _ in range(3)] == [b"0", b"1", b"2"]
    await wait_for(lambda: cell.counters()["dropped_rate_limited"] == 2)
    net.clock.advance(1)  # the bucket refills
    alice.send_to_other(b"later", alice_fields)
    assert (await bob.next())[0] == b"later"


# Seed 000: p2p mode


@pytest_twisted.ensureDeferred
async def test_p2p_mode_hands_out_the_peers_own_addresses(net):
    cell = net.cell(mode="p2p")
    call = cell.start_voice_call(ALICE, BOB, LOCAL, "127.0.0.2")
    alice_fields, bob_fields = cell.party_addresses(call.key, ALICE), cell.party_addresses(call.key, BOB)
    assert alice_fields["your_ip"] == LOCAL and bob_fields["your_ip"] == "127.0.0.2"
    assert (alice_fields["other_ip"], alice_fields["other_port"]) == (bob_fields["your_ip"], bob_fields["your_port"])
    assert (bob_fields["other_ip"], bob_fields["other_port"]) == (alice_fields["your_ip"], alice_fields["your_port"])
    assert call.caller_leg.relay_port is None and call.callee_leg.relay_port is None


def test_accepted_p2p_call_has_no_idle_timeout():
    registry = CallRegistry(clock=task.Clock())
    call = registry.create_call(ALICE, BOB, "voice", "p2p")
    registry.accept(call.key, BOB)
    registry.clock.advance(3600)
    assert registry.get(call.key) is call


# Seed 002: keyed relay


async def request_key(cell, party, request=KEY_REQUEST):
    party.send(request, cell_address(cell))
    reply, source = await party.next()
    assert source == cell_address(cell)
    return parse_fields(reply)


@pytest_twisted.ensureDeferred
async def test_keyed_relay_key_request_accept_then_media_both_ways(net):
    cell = net.cell()
    alice, bob = net.party(), net.party()
    reply = await request_key(cell, alice)
    assert reply["stat"] == "200"
    key = reply["connection_key"]
    accept_key(cell, key)

    alice.send(media(key, "A", b""), cell_address(cell))  # latches alice; bob is not known yet
    await wait_for(lambda: cell.counters()["dropped_peer_unknown"] == 1)
    bob.send(media(key, "B", b"hi alice"), cell_address(cell))
    assert await alice.next() == (media(key, "B", b"hi alice"), cell_address(cell))
    alice.send(media(key, "A", b"hi bob"), cell_address(cell))
    assert await bob.next() == (media(key, "A", b"hi bob"), cell_address(cell))


@pytest_twisted.ensureDeferred
async def test_keyed_media_before_accept_is_dropped(net):
    cell = net.cell()
    alice = net.party()
    key = (await request_key(cell, alice))["connection_key"]
    alice.send(media(key, "A", b"unclaimed"), cell_address(cell))
    await wait_for(lambda: cell.counters()["dropped_unknown_key"] == 1)
    assert cell.registry.claim(key, ALICE, BOB).state == "requested"
    alice.send(media(key, "A", b"too early"), cell_address(cell))
    await wait_for(lambda: cell.counters()["dropped_not_accepted"] == 1)
    assert cell.registry.get(key).caller_leg.latched is None


@pytest_twisted.ensureDeferred
async def test_keyed_relay_third_party_can_neither_inject_nor_receive(net):
    cell = net.cell()
    alice, bob, mallory = net.party(), net.party(), net.party()
    key = (await request_key(cell, alice))["connection_key"]
    accept_key(cell, key)
    alice.send(media(key, "A", b""), cell_address(cell))
    bob.send(media(key, "B", b"latched"), cell_address(cell))
    await alice.next()

    mallory.send(media("A" * len(key), "A", b"guessed key"), cell_address(cell))
    mallory.send(media(key, "A", b"stolen key, wrong source"), cell_address(cell))
    alice.send(media(key, "A", b"genuine"), cell_address(cell))
    assert (await bob.next())[0] == media(key, "A", b"genuine")
    await wait_for(lambda: cell.counters()["dropped_wrong_source"] == 1)
    assert cell.counters()["dropped_unknown_key"] == 1
    assert not bob.inbox.pending and not mallory.inbox.pending


@pytest_twisted.ensureDeferred
async def test_videocall_key_allows_larger_datagrams(net):
    cell = net.cell()
    alice, bob = net.party(), net.party()
    reply = await request_key(cell, alice, b"user_account: +86101\nfriends: +8200001\nmessage_type: videocall\n\n")
    key = reply["connection_key"]
    accept_key(cell, key)
    alice.send(media(key, "A", b""), cell_address(cell))
    frame = media(key, "B", b"v" * 8000)
    bob.send(frame, cell_address(cell))
    assert (await alice.next())[0] == frame


@pytest.mark.parametrize("request_datagram", [
    b"hello\n\n",
    b"user_account: +86101\n\n",
    b"user_account: +86101\nfriends: +86101\n\n",
    b"user_account: +86101\nfriends: +8200001\nmessage_type: fax\n\n",
    b"\xff\xfe: x\n\n",
])
@pytest_twisted.ensureDeferred
async def test_bad_key_request_gets_400(net, request_datagram):
    cell = net.cell()
    assert await request_key(cell, net.party(), request_datagram) == {"stat": "400", "reason": "bad_request"}


@pytest_twisted.ensureDeferred
async def test_key_requests_are_rate_limited_per_source_ip(net):
    cell = net.cell(limits=CallLimits(unclaimed_keys_per_ip=10))
    alice = net.party()
    for number in range(5):
        assert (await request_key(cell, alice, b"junk %d\n" % number))["stat"] == "400"
    for number in range(5):
        reply = await request_key(cell, alice, b"user_account: +%d\nfriends: +8200001\n\n" % number)
        assert reply["stat"] == "200", number
    assert await request_key(cell, alice) == {"stat": "429", "reason": "rate_limited"}
    net.clock.advance(10)
    assert (await request_key(cell, alice))["stat"] == "200"


@pytest_twisted.ensureDeferred
async def test_key_requests_past_the_first_refusal_get_no_reply(net):
    cell = net.cell(limits=CallLimits(key_requests_per_ip=1))
    alice = net.party()
    assert (await request_key(cell, alice))["stat"] == "200"
    assert (await request_key(cell, alice))["stat"] == "429"
    alice.send(KEY_REQUEST, cell_address(cell))
    await wait_for(lambda: cell.counters()["dropped_key_flood"] == 1)
    assert (await request_key(cell, net.party(interface="127.0.0.2")))["stat"] == "200"
    assert not alice.inbox.pending


@pytest_twisted.ensureDeferred
async def test_strangers_key_requests_make_nobody_busy_and_take_no_call_capacity(net):
    cell = net.cell(limits=CallLimits(max_calls_per_user=1, max_calls_total=1))
    stranger = net.party()
    for _ in range(4):
        assert (await request_key(cell, stranger))["stat"] == "200"
    assert await request_key(cell, stranger) == {"stat": "429", "reason": "rate_limited"}
    assert len(cell.registry) == 0 and cell.registry.unclaimed_count() == 4
    call = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)  # neither is busy, the server is not full
    assert cell.registry.get(call.key) is call


@pytest_twisted.ensureDeferred
async def test_unclaimed_keys_are_bounded_in_total_and_expire(net):
    cell = net.cell(limits=CallLimits(unclaimed_keys_total=3))
    first, second = net.party(), net.party(interface="127.0.0.2")
    keys = [(await request_key(cell, party))["connection_key"] for party in (first, first, second)]
    assert await request_key(cell, second) == {"stat": "503", "reason": "server_full"}
    net.clock.advance(30)
    assert cell.registry.unclaimed_count() == 0
    with pytest.raises(CallError, match="no_such_call"):
        cell.registry.claim(keys[0], ALICE, BOB)
    assert (await request_key(cell, second))["stat"] == "200"


def test_only_the_named_caller_and_callee_can_claim_a_key():
    registry = CallRegistry(clock=task.Clock())
    key = registry.request_key(ALICE, BOB)
    for caller, callee in ((CAROL, BOB), (ALICE, CAROL)):
        with pytest.raises(CallError, match="not_party"):
            registry.claim(key, caller, callee)
    assert registry.claim(key, ALICE, BOB).key == key
    with pytest.raises(CallError, match="no_such_call"):
        registry.claim(key, ALICE, BOB)


# What ends a call


@pytest_twisted.ensureDeferred
async def test_rejected_call_frees_its_relay_ports_and_key(net):
    cell = net.cell()
    call = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)
    ports = relay_ports_of(call)
    cell.registry.close(call.key, "rejected", by_account=BOB)
    assert net.ended == [(call, "rejected")]
    assert call.state == CLOSED and cell.registry.get(call.key) is None
    await cell.wait_ports_closed()
    assert all(port_is_free(port) for port in ports)


@pytest_twisted.ensureDeferred
async def test_unanswered_request_expires(net):
    cell = net.cell()
    call = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)
    net.clock.advance(29.9)
    assert net.ended == []
    net.clock.advance(0.1)
    assert net.ended == [(call, "timeout")]
    await cell.wait_ports_closed()
    assert all(port_is_free(port) for port in relay_ports_of(call))


@pytest_twisted.ensureDeferred
async def test_call_silent_both_ways_ends_after_idle_timeout(net):
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    alice, bob = net.party(alice_fields["your_port"]), net.party(bob_fields["your_port"])
    net.clock.advance(59)
    alice.send_to_other(b"still here", alice_fields)
    await bob.next()
    net.clock.advance(59)
    assert net.ended == []
    net.clock.advance(1)
    assert net.ended == [(call, "idle")]
    assert net.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_close_all_for_ends_every_call_of_the_account_and_frees_ports(net):
    cell = net.cell()
    with_bob = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)
    key_call = keyed_call(cell.registry, CAROL, ALICE)
    keyed_call(cell.registry, BOB, CAROL)
    ports = relay_ports_of(with_bob)

    ended = cell.registry.close_all_for(ALICE, "logout")
    assert set(ended) == {with_bob, key_call}
    assert sorted(reason for _, reason in net.ended) == ["logout", "logout"]
    assert cell.registry.get(with_bob.key) is None and cell.registry.get(key_call.key) is None
    assert cell.counters()["calls"] == 1
    await cell.wait_ports_closed()
    assert all(port_is_free(port) for port in ports)


@pytest_twisted.ensureDeferred
async def test_stop_service_closes_every_port_and_cancels_every_timer(net):
    before = set(reactor.getDelayedCalls())
    cell = net.cell()
    call, alice_fields, bob_fields = accepted_voice_call(cell)
    requested = cell.start_voice_call(CAROL, BOB, LOCAL, LOCAL)
    ports = relay_ports_of(call) + relay_ports_of(requested) + [cell_address(cell)[1]]

    await cell.stopService()
    assert all(port_is_free(port) for port in ports)
    assert net.clock.getDelayedCalls() == []
    assert set(reactor.getDelayedCalls()) <= before
    assert sorted(reason for _, reason in net.ended) == ["shutdown", "shutdown"]
    assert len(cell.registry) == 0


def test_ports_are_handed_out_at_random_and_the_last_free_one_is_found():
    ports = PortRange(40000, 40999)
    in_use = set()
    for _ in range(20):
        in_use.add(next(ports.candidates(in_use)))
    assert len(in_use) == 20
    assert sorted(in_use) != list(range(min(in_use), min(in_use) + 20))  # not in sequence
    nearly_full = set(range(40000, 41000)) - {40500}
    assert next(ports.candidates(nearly_full)) == 40500


@pytest_twisted.ensureDeferred
async def test_cell_and_relay_ports_get_the_large_buffers(net):
    cell = net.cell()
    call = cell.start_voice_call(ALICE, BOB, LOCAL, LOCAL)
    # Linux caps the sizes at net.core.rmem_max / wmem_max and reports twice what it set.
    receive, send = 2 * min(UDP_BUFFER, kernel_limit("rmem_max")), 2 * min(UDP_BUFFER, kernel_limit("wmem_max"))
    for port in (cell.cell_port, call.caller_leg.out, call.callee_leg.out):
        assert port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == receive
        assert port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == send
    assert cell.buffer_sizes() == {"receive": receive, "send": send}


def kernel_limit(name):
    with open(f"/proc/sys/net/core/{name}") as limit:
        return int(limit.read())
