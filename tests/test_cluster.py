"""Three nodes in one process, one MariaDB database, one Redis: clients on
different nodes chat as if on one (neochat/cluster, docs/scaling.md)."""

import os
import socket
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from neochat.config import Settings
from neochat.services.ftp import FtpSettings
from neochat.services.root import build_service
from tests.conftest import RunningServer, _mysql_database
from tests.test_social import content, log_in, log_in_again, message_type, send_text
from tests.udp import LOCAL, free_port_range

REDIS = ("127.0.0.1", 6379)
REDIS_DB = 9  # away from anything else on the shared server; keys are prefixed per test too
HEARTBEAT = 0.3  # seconds: a node is dead after 0.9


def redis_up():
    try:
        socket.create_connection(REDIS, timeout=1).close()
        return True
    except OSError:
        return False


@defer.inlineCallbacks
def wait_until(condition, seconds=10):
    """Poll ``condition`` every 50 ms; False if it never held."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        yield task.deferLater(reactor, 0.05, lambda: None)
    return False


class Cluster:
    def __init__(self, db_url, data_dir, prefix):
        self.db_url, self.data_dir, self.prefix = db_url, data_dir, prefix
        self.nodes = []

    @defer.inlineCallbacks
    def start(self, name):
        settings = Settings(
            listen=["tcp:0:interface=127.0.0.1"], db_url=self.db_url,
            data_dir=self.data_dir,  # shared by every node: files are served by all
            hash_time_cost=1, hash_memory_kib=1024,
            cell_port=0, cell_interface=LOCAL, relay_ports=(0, 0), client_ports=free_port_range(8),
            ftp=FtpSettings(interface=LOCAL, port=0),
            cluster=f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}", node_id=name,
            cluster_prefix=self.prefix, cluster_heartbeat=HEARTBEAT,
        )
        root = build_service(settings, reactor)
        root.startService()
        yield root.ready
        assert (yield wait_until(lambda: root.router.listening)), "node never subscribed"
        node = RunningServer(root)
        self.nodes.append(node)
        return node

    @defer.inlineCallbacks
    def stop(self):
        for node in self.nodes:
            yield node.stop()


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path):
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Redis on 127.0.0.1:6379: cluster tests must run")
        pytest.skip("no Redis on 127.0.0.1:6379")
    db_url, drop = _mysql_database()
    running = Cluster(db_url, tmp_path / "data", f"neochat-test:{uuid.uuid4().hex}:")
    for name in ("n0", "n1", "n2"):
        await running.start(name)
    yield running
    await running.stop()
    drop()


@pytest_twisted.inlineCallbacks
def test_private_chat_between_nodes(cluster, dialect):
    n0, n1, _ = cluster.nodes
    alice, = yield log_in(n0, "alice", dialect=dialect)
    bob, = yield log_in(n1, "bob", dialect=dialect)
    yield send_text(alice, "alice", "bob", "hello from n0", dialect)
    message = yield bob.next(message_type(dialect))
    assert content(message) == "hello from n0"
    yield send_text(bob, "bob", "alice", "hello from n1", dialect)
    message = yield alice.next(message_type(dialect))
    assert content(message) == "hello from n1"


@pytest_twisted.inlineCallbacks
def test_group_and_lobby_chat_reach_every_node(cluster, dialect):
    n0, n1, n2 = cluster.nodes
    owner, = yield log_in(n0, "owner", dialect=dialect)
    near, = yield log_in(n0, "near", dialect=dialect)
    far1, = yield log_in(n1, "far1", dialect=dialect)
    far2, = yield log_in(n2, "far2", dialect=dialect)
    yield owner.op("group_create", group_id="g1")
    for member in (near, far1, far2):
        ok, _ = yield member.op("group_join", group_id="g1")
        assert ok
    yield send_text(owner, "owner", "g1", "to the group", dialect, group=True)
    for member in (near, far1, far2):
        message = yield member.next(message_type(dialect))
        assert content(message) == "to the group"
    yield send_text(far2, "far2", "all", "to everyone", dialect, group=True)
    for client in (owner, near, far1):
        message = yield client.next(message_type(dialect))
        assert content(message) == "to everyone"


@pytest_twisted.inlineCallbacks
def test_group_fan_out_publishes_once_per_node(cluster, monkeypatch):
    n0, n1, _ = cluster.nodes
    owner, = yield log_in(n0, "owner", dialect="json")
    members = yield log_in(n1, "m1", "m2", "m3", dialect="json")
    yield owner.op("group_create", group_id="g1")
    for member in members:
        yield member.op("group_join", group_id="g1")
    published = []
    router = n0.root.router
    original = router._publish
    monkeypatch.setattr(router, "_publish", lambda channel, text: published.append(channel) or original(channel, text))
    yield send_text(owner, "owner", "g1", "one publish", "json", group=True)
    for member in members:
        message = yield member.next("word")
        assert message["content"] == "one publish"
    assert published == ["node:n1"]


@pytest_twisted.inlineCallbacks
def test_offline_messages_wait_for_a_login_on_any_node(cluster, dialect):
    n0, n1, n2 = cluster.nodes
    alice, = yield log_in(n0, "alice", dialect=dialect)
    bob, = yield log_in(n1, "bob", dialect=dialect)
    assert (yield wait_until(lambda: n0.root.router.is_online("bob")))
    yield bob.close()
    # Written to a connection that is going away counts as delivered for a
    # client that does not acknowledge (seed 002's): wait until it is gone.
    assert (yield wait_until(lambda: not n0.root.router.is_online("bob")))
    for n in range(3):
        yield send_text(alice, "alice", "bob", f"while away {n}", dialect)
    bob = yield log_in_again(n2, "bob", dialect)
    for n in range(3):
        message = yield bob.next(message_type(dialect))
        assert content(message) == f"while away {n}"


@pytest_twisted.inlineCallbacks
def test_online_lists_cover_the_cluster(cluster):
    n0, n1, n2 = cluster.nodes
    alice, = yield n0.logged_in("alice")
    yield alice.next("update_online_user")
    bob, = yield n1.logged_in("bob")
    online = yield alice.next("update_online_user")
    assert online["online_user"] == ["alice", "bob"]
    carol, = yield n2.logged_in("carol", presence="delta")
    first = yield carol.next("presence")
    assert first["online"] == ["alice", "bob", "carol"]
    yield bob.close()
    left = yield alice.next("leave_message")
    assert left["username"] == "bob"
    change = yield carol.next("presence")
    assert change == {"message_type": "presence", "joined": [], "left": ["bob"]}
    carol.send({"message_type": "update_online_user"})
    asked = yield carol.next("update_online_user")
    assert asked["online_user"] == ["alice", "carol"]


@pytest_twisted.inlineCallbacks
def test_a_second_login_on_another_node_replaces_the_first(cluster, dialect):
    n0, n1, n2 = cluster.nodes
    first, = yield log_in(n0, "alice", dialect=dialect)
    bob, = yield log_in(n2, "bob", dialect=dialect)
    second = yield log_in_again(n1, "alice", dialect)
    kicked = yield first.next("kicked")
    assert kicked["reason"] == "logged in from another connection"
    yield send_text(bob, "bob", "alice", "to the newer login", dialect)
    message = yield second.next(message_type(dialect))
    assert content(message) == "to the newer login"
    assert n1.root.router.session_of("alice") is not None
    assert n0.root.router.session_of("alice") is None
