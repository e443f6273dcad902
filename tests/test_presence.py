"""Presence forms (full, delta, friends), coalescing, and fan-out encoded once."""

from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from neochat.chat import presence
from neochat.services.json_dialect import JsonDialect
from neochat.services.limits import Limits


@pytest.fixture(autouse=True)
def one_address_many_users(settings):
    """Every test client connects from 127.0.0.1: no cap per address."""
    settings.limits = replace(Limits(), connections_per_address=0)


@pytest_twisted.inlineCallbacks
def test_delta_presence_starts_with_the_list_then_tells_who_joined_and_left(server):
    alice, = yield server.logged_in("alice", presence="delta")
    first = yield alice.next("presence")
    assert first == {"message_type": "presence", "online": ["alice"]}
    bob, = yield server.logged_in("bob")
    change = yield alice.next("presence")
    assert change == {"message_type": "presence", "joined": ["bob"], "left": []}
    yield bob.close()
    change = yield alice.next("presence")
    assert change == {"message_type": "presence", "joined": [], "left": ["bob"]}
    assert not alice.of_type("update_online_user") and not alice.of_type("leave_message")


@pytest_twisted.inlineCallbacks
def test_header_clients_ask_for_delta_presence_with_a_header(server):
    alice, = yield server.logged_in("alice", dialect="header", presence="delta")
    first = yield alice.next("presence")
    assert first["online"] == "alice"
    yield server.logged_in("bob", dialect="header")
    change = yield alice.next("presence")
    assert (change["joined"], change["left"]) == ("bob", "")


@pytest_twisted.inlineCallbacks
def test_friends_presence_is_only_about_friends(server):
    alice, = yield server.logged_in("alice", presence="friends")
    bob, carol = yield server.logged_in("bob", "carol")
    yield alice.op("friend_request", friend="bob")
    yield bob.op("friend_accept", friend="alice")
    yield bob.close()
    notice = yield alice.next("friend_offline")
    assert notice["friend"] == "bob"
    yield carol.close()
    yield task.deferLater(reactor, 0.7, lambda: None)
    assert not [m for m in alice.received
                if m["message_type"] in ("update_online_user", "leave_message", "presence")]


@pytest_twisted.inlineCallbacks
def test_an_unknown_presence_form_is_refused(server, dialect):
    client = yield server.client(dialect)
    try:
        yield client.register_and_login("alice", presence="everything")
    except AssertionError as refused:
        assert "presence must be one of: full, delta, friends" in str(refused)
    else:
        raise AssertionError("login with an unknown presence form succeeded")


@pytest_twisted.inlineCallbacks
def test_a_login_burst_sends_few_full_lists_and_the_last_is_complete(server):
    server.chat.presence.interval = 0.5 * presence.FULL_AT / 31  # the whole 0.5 s with 31 watching
    watcher, = yield server.logged_in("watcher")
    yield watcher.next("update_online_user")
    names = [f"u{n:02d}" for n in range(30)]
    clients = yield defer.gatherResults([server.client() for _ in names])
    yield defer.gatherResults([c.register_and_login(name) for c, name in zip(clients, names)])
    yield task.deferLater(reactor, 1.2, lambda: None)
    lists = watcher.of_type("update_online_user")
    assert len(lists) < len(names) / 2
    assert lists[-1]["online_user"] == sorted(names + ["watcher"])


@pytest_twisted.inlineCallbacks
def test_a_lobby_message_to_many_is_encoded_once(server, monkeypatch):
    names = [f"u{n}" for n in range(12)]
    clients = yield server.logged_in(*names)
    encoded = []
    original = JsonDialect.encode_event
    monkeypatch.setattr(JsonDialect, "encode_event", lambda self, event: encoded.append(event) or original(self, event))
    clients[0].send({"message_type": "word", "chat_type": "normal", "send_user": "u0", "rece_user": "all",
                     "content": "hello all"})
    for client in clients[1:]:
        assert (yield client.next("word"))["content"] == "hello all"
    assert len([e for e in encoded if getattr(e, "content", None) == "hello all"]) == 1


class SlowSession:
    """A watching session whose every presence event costs ``cost`` seconds of ``timer``."""

    def __init__(self, timer, cost):
        self.presence_form = presence.DELTA
        self.timer, self.cost, self.events = timer, cost, []

    def presence(self, event):
        self.timer.now += self.cost
        self.events.append(event)


class FakeTimer:
    now = 0.0

    def __call__(self):
        return self.now


def test_flushes_space_out_when_telling_everyone_takes_long():
    """Presence keeps a bounded share of the reactor: after a flush that took
    1 s, the next waits SPACING seconds, not the 0.5 s interval."""
    clock, timer = task.Clock(), FakeTimer()
    online = []
    router = type("Router", (), {"online_accounts": lambda self: online})()
    tracker = presence.Presence(router, clock, interval=0.5, timer=timer)
    sessions = [SlowSession(timer, cost=0.0) for _ in range(1024)]  # at least FULL_AT
    for session in sessions:
        tracker.watch(session)
    clock.advance(0)  # the first flush: everyone gets the list, quickly
    for session in sessions:
        session.cost = 2.0 ** -10  # from now on a flush takes 1 s (exactly, in binary)
    tracker.came_online("a")
    clock.advance(0.5)
    assert sessions[0].events[-1].joined == ("a",)  # told after the usual interval
    tracker.came_online("b")
    clock.advance(presence.SPACING - 0.5)
    assert sessions[0].events[-1].joined == ("a",)  # held back: the last flush took 1 s
    clock.advance(0.5)
    assert sessions[0].events[-1].joined == ("b",)
    for session in sessions:
        session.cost = 0.0  # cheap again: back to the interval
    tracker.came_online("c")
    clock.advance(presence.SPACING)  # spaced after the slow flush of "b"
    tracker.came_online("d")
    clock.advance(0.5)
    assert sessions[0].events[-1].joined == ("d",)
