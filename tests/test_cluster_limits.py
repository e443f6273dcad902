"""Failed logins and registrations counted in Redis: attempts spread over
three nodes are throttled as on one (neochat/cluster/throttle.py); while
Redis does not answer, each node counts alone."""

import pytest_twisted
from twisted.internet import defer, reactor, task

from neochat.chat.throttle import FailurePolicy, Throttle, ThrottleSettings, TooManyAttempts
from neochat.cluster.throttle import ClusterThrottle
from tests.test_cluster import three_nodes
from tests.test_logins import login, register

# Locked at the 4th failure, no delay before: spread over 3 nodes, no node sees more than 2.
STRICT = ThrottleSettings(
    account=FailurePolicy(free=4, lock_after=4, lock_seconds=60),
    address=FailurePolicy(free=100, lock_after=200, lock_seconds=60),
    registrations_per_address=3,
)


@pytest_twisted.async_yield_fixture
async def strict_cluster(cluster_db, tmp_path):
    async for running in three_nodes(cluster_db, tmp_path, throttle=STRICT):
        yield running


@pytest_twisted.ensureDeferred
async def test_failed_logins_spread_over_nodes_lock_the_account(strict_cluster, dialect):
    n0, n1, n2 = strict_cluster.nodes
    await n0.logged_in("alice", dialect=dialect)
    clients = [await node.client(dialect) for node in (n0, n1, n2)]
    for attempt in range(4):
        ok, reply = await login(clients[attempt % 3], dialect, "alice", "wrong")
        assert not ok and "wrong account or password" in str(reply)
    for client in clients:  # every node refuses her now, the right password too
        ok, reply = await login(client, dialect, "alice", "secret")
        assert not ok and "too many attempts, retry in 60 s" in str(reply)
    bob, = await n1.logged_in("bob", dialect=dialect)  # the others keep being served
    ok, _ = await login(await n2.client(dialect), dialect, "bob", "secret")
    assert ok


@pytest_twisted.ensureDeferred
async def test_a_good_login_on_any_node_clears_the_failures(strict_cluster):
    n0, n1, n2 = strict_cluster.nodes
    await n0.logged_in("alice")
    client = await n1.client()
    for _ in range(3):
        assert not (await login(client, "json", "alice", "wrong"))[0]
    assert (await login(await n2.client(), "json", "alice", "secret"))[0]
    for _ in range(3):  # counted from zero again: no lockout yet
        assert not (await login(client, "json", "alice", "wrong"))[0]
    ok, reply = await login(client, "json", "alice", "secret")
    assert ok, reply


@pytest_twisted.ensureDeferred
async def test_registrations_from_one_address_spread_over_nodes_hit_the_limit(strict_cluster, dialect):
    nodes = strict_cluster.nodes
    clients = [await node.client(dialect) for node in nodes]
    for number, client in enumerate(clients):
        ok, reply = await register(client, dialect, f"user{number}")
        assert ok, reply
    for client in clients:
        ok, reply = await register(client, dialect, "one_too_many")
        assert not ok and "too many attempts, retry in" in str(reply)
        assert 3500 < int(str(reply).split("retry in ")[1].split(" s")[0]) <= 3600
    ok, _ = await login(clients[1], dialect, "user0", "secret")  # registered accounts log in
    assert ok


@pytest_twisted.ensureDeferred
async def test_the_growing_delay_holds_on_every_node_and_zero_lifts_a_limit(cluster_db, tmp_path):
    throttle = ThrottleSettings(account=FailurePolicy(free=1, lock_after=0, lock_seconds=60),
                                address=STRICT.address, registrations_per_address=0)
    async for cluster in three_nodes(cluster_db, tmp_path, throttle=throttle):
        n0, n1, n2 = cluster.nodes
        clients = [await node.client() for node in (n0, n1, n2)]
        for number, client in enumerate(clients * 2):  # past the default limit of 5
            assert (await register(client, "json", f"user{number}"))[0]
        assert not (await login(clients[0], "json", "user0", "wrong"))[0]
        ok, reply = await login(clients[1], "json", "user0", "secret")  # waits 1 s after the first failure
        assert not ok and reply["reason"] == "too many attempts, retry in 1 s"
        await task.deferLater(reactor, 1.1, lambda: None)
        ok, reply = await login(clients[2], "json", "user0", "secret")
        assert ok, reply


class Silent:
    """A Redis that is connected and never answers: ``answer_all`` answers
    what waits, as a Redis that was slow would."""

    def __init__(self):
        self.waiting = []
        self.commands = self

    def connected(self):
        return True

    def execute_command(self, *command):
        self.waiting.append(defer.Deferred())
        return self.waiting[-1]

    def answer_all(self, reply):
        waiting, self.waiting = self.waiting, []
        for answer in waiting:
            answer.callback(reply)


def refusal(deferred):
    """The exception ``deferred`` failed with, which has fired."""
    caught = []
    deferred.addErrback(caught.append)
    return caught[0].value


def silent_throttle(redis, waiting=100):
    clock = task.Clock()
    settings = ThrottleSettings(account=FailurePolicy(free=2, lock_after=2, lock_seconds=60),
                                shared_timeout=1.0, shared_waiting=waiting)
    router = type("Router", (), {"redis": redis, "prefix": "neochat-test:"})()
    return ClusterThrottle(Throttle(clock, settings), router, clock), clock


def test_while_redis_does_not_answer_a_node_counts_alone():
    redis = Silent()
    throttle, clock = silent_throttle(redis)
    for _ in range(2):
        failed = throttle.login_failed("alice", "10.0.0.1", "chat")
        clock.advance(1.0)  # Redis's count never comes: the node's own count holds
        assert failed.called
    checked = throttle.check_login("alice", "10.0.0.1")
    clock.advance(1.0)  # locked at 2 s (when the 2nd failure was counted), checked at 3 s
    refused = refusal(checked)
    assert isinstance(refused, TooManyAttempts) and refused.retry_after == 59
    checked = throttle.check_login("bob", "10.0.0.2")
    assert not checked.called  # waits for Redis, at most shared_timeout
    clock.advance(1.0)
    assert checked.called and checked.result is None
    assert not throttle.shared


def test_commands_unanswered_by_redis_are_bounded():
    redis = Silent()
    throttle, clock = silent_throttle(redis, waiting=4)
    for number in range(10):
        throttle.check_login(f"user{number}", "10.0.0.1")
    assert len(redis.waiting) == 4  # shared_waiting; the others were checked on the node alone
    clock.advance(1.0)
    redis.answer_all([-2, -2])  # answered late: the bound is free again, and Redis counts again
    checked = throttle.check_login("late", "10.0.0.1")
    assert len(redis.waiting) == 1
    redis.answer_all([-2, 5000])
    refused = refusal(checked)
    assert isinstance(refused, TooManyAttempts) and refused.retry_after == 5
    assert throttle.shared


def test_a_disconnected_redis_is_not_waited_for():
    redis = Silent()
    redis.connected = lambda: False
    throttle, _ = silent_throttle(redis)
    registered = throttle.register("10.0.0.1")
    assert registered.called and registered.result is None and not redis.waiting
