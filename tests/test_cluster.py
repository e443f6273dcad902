"""Three nodes in one process, one MariaDB database, one Redis: clients on
different nodes chat as if on one (neochat/cluster, docs/scaling.md)."""

import socket
import uuid

import pytest_twisted
import txredisapi
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread

from neochat.chat.throttle import ThrottleSettings
from neochat.config import Settings
from neochat.services.ftp import FtpSettings
from neochat.services.root import build_service
from tests.conftest import REDIS, REDIS_DB, RunningServer
from tests.test_files_ftp import connect, download, store
from tests.test_social import content, log_in, log_in_again, message_type, send_text
from tests.udp import LOCAL, free_port_range

HEARTBEAT = 0.3  # seconds: a node is dead after 0.9

@defer.inlineCallbacks
def wait_until(condition, seconds=10):
    """Poll ``condition`` every 50 ms; False if it never held."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        yield task.deferLater(reactor, 0.05, lambda: None)
    return False


class Cluster:
    def __init__(self, db_url, data_dir, prefix, **settings):
        """``settings``: more Settings fields for every node."""
        self.db_url, self.data_dir, self.prefix = db_url, data_dir, prefix
        self.settings = {"throttle": ThrottleSettings(registrations_per_address=100_000), **settings}
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
            cluster_prefix=self.prefix, cluster_heartbeat=HEARTBEAT, **self.settings,
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


async def three_nodes(db_url, tmp_path, **settings):
    """Yields a Cluster of n0, n1 and n2 (for fixtures)."""
    running = Cluster(db_url, tmp_path / "data", f"neochat-test:{uuid.uuid4().hex}:", **settings)
    for name in ("n0", "n1", "n2"):
        await running.start(name)
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def cluster(cluster_db, tmp_path):
    async for running in three_nodes(cluster_db, tmp_path):
        yield running


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


@pytest_twisted.inlineCallbacks
def test_a_file_uploaded_on_one_node_downloads_from_another(cluster):
    n0, n1, _ = cluster.nodes
    yield log_in(n0, "alice", dialect="json")

    def ftp_sessions():
        up = connect(n0.root.ftp_service.address[1])
        up.login("alice", "secret")
        name = store(up, "notes.txt", b"on shared storage")
        up.quit()
        down = connect(n1.root.ftp_service.address[1])
        down.login("alice", "secret")
        try:
            return download(down, name)
        finally:
            down.quit()

    data = yield deferToThread(ftp_sessions)
    assert data == b"on shared storage"


@defer.inlineCallbacks
def crash(node):
    """The node stops talking to Redis at once, without announcing its
    logouts, then its connections go: its peers learn it only from the
    missing heartbeats."""
    yield node.root.router.abandon()
    yield node.root.stopService()


def online_as_seen_by(client):
    """The online list a seed-000 client has put together from what it got."""
    online = set()
    for message in client.received:
        if message["message_type"] == "update_online_user":
            online = set(message["online_user"])
        elif message["message_type"] == "leave_message":
            online.discard(message["username"])
    return online


@defer.inlineCallbacks
def alice_and_bob(cluster):
    """Alice on n0 and Bob on n1, acknowledging, each node knowing of both."""
    n0, n1, _ = cluster.nodes
    alice, = yield n0.logged_in("alice", acks=True)
    bob, = yield n1.logged_in("bob", acks=True)
    assert (yield wait_until(lambda: n0.root.router.is_online("bob") and n1.root.router.is_online("alice")))
    return alice, bob


@pytest_twisted.inlineCallbacks
def test_the_users_of_a_dead_node_go_offline_and_come_back_elsewhere(cluster):
    n0, n1, n2 = cluster.nodes
    alice, bob = yield alice_and_bob(cluster)
    reply = yield send_text(alice, "alice", "bob", "before the crash", "json")
    assert reply["content"] == "success"
    yield crash(n0)
    # Told by leave_message, or by a whole list without her (the pending
    # queues are replayed when a node dies, and presence waits for a replay).
    assert (yield wait_until(lambda: "alice" not in online_as_seen_by(bob)))
    reply = yield send_text(bob, "bob", "alice", "while you were down", "json")
    assert reply["content"] == "success"
    alice = yield log_in_again(n2, "alice", "json")
    message = yield alice.next("word")
    assert message["content"] == "while you were down"
    assert (yield wait_until(lambda: "alice" in online_as_seen_by(bob)))
    history = [m["content"] for m in bob.of_type("word")]
    assert history == ["before the crash"]


@pytest_twisted.inlineCallbacks
def test_what_a_dead_node_committed_but_never_announced_still_arrives(cluster, monkeypatch):
    n0, n1, _ = cluster.nodes
    alice, bob = yield alice_and_bob(cluster)
    monkeypatch.setattr(n0.root.router, "_flush", lambda: None)  # it dies before publishing
    reply = yield send_text(alice, "alice", "bob", "committed, then the crash", "json")
    assert reply["content"] == "success"
    yield crash(n0)
    message = yield bob.next("word")
    assert message["content"] == "committed, then the crash"


@defer.inlineCallbacks
def kill_redis_connections(node):
    """CLIENT KILL, from a connection of our own, the node's two connections
    (the shared Redis server keeps running)."""
    ports = [connection.transport.getHost().port for connection in node.root.router.redis.connections()]
    assert len(ports) == 2
    admin = yield txredisapi.Connection(*REDIS, reconnect=False)
    try:
        for port in ports:
            yield admin.execute_command("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")
    finally:
        yield admin.disconnect()


@pytest_twisted.inlineCallbacks
def test_a_node_whose_redis_connections_drop_reconnects_and_loses_nothing(cluster):
    n0, n1, n2 = cluster.nodes
    alice, bob = yield alice_and_bob(cluster)
    yield kill_redis_connections(n1)
    assert (yield wait_until(lambda: not n1.root.router.listening))
    # Announced while n1 hears nothing: n1 replays it from the database once back.
    reply = yield send_text(alice, "alice", "bob", "across the blip", "json")
    assert reply["content"] == "success"
    message = yield bob.next("word")
    assert message["content"] == "across the blip"
    assert (yield wait_until(lambda: n1.root.router.listening))
    yield n2.logged_in("carol")
    assert (yield wait_until(lambda: "carol" in online_as_seen_by(bob)))
    assert n0.root.router.is_online("bob") and n1.root.router.is_online("alice")


def test_the_cluster_options_reach_the_settings():
    from neochat.services.root import cluster_router
    from neochat.tap import Options

    options = Options()
    options.parseOptions(["--cluster", "redis://127.0.0.1:6379/3", "--node-id", "east-1",
                          "--cluster-prefix", "chat2:", "--cluster-heartbeat", "0.5"])
    settings = options.settings()
    assert (settings.cluster, settings.node_id) == ("redis://127.0.0.1:6379/3", "east-1")
    assert (settings.cluster_prefix, settings.cluster_heartbeat) == ("chat2:", 0.5)
    options = Options()
    options.parseOptions(["--cluster", "redis://127.0.0.1:6379/3", "--listen", "tcp:7007"])
    router = cluster_router(options.settings(), reactor)
    assert router.node_id == f"{socket.gethostname()}-7007"
    assert Options().settings().cluster is None


def test_commands_waiting_for_an_absent_redis_are_bounded(monkeypatch):
    from neochat.cluster import router as module

    class Away:
        """A Redis connection that never answers."""

        def __init__(self):
            self.sent = []

        def execute_command(self, *args):
            self.sent.append(args)
            return defer.Deferred()

    monkeypatch.setattr(module, "MAX_WAITING", 5)
    router = module.ClusterRouter("redis://127.0.0.1:6379/9", "n0", reactor)
    router.redis = type("Redis", (), {"commands": Away()})()
    for n in range(8):
        router._publish("all", f"event {n}")
    assert len(router.redis.commands.sent) == 5


@pytest_twisted.inlineCallbacks
def test_logins_at_once_on_two_nodes_leave_exactly_one(cluster):
    n0, n1, _ = cluster.nodes
    first, = yield n0.logged_in("alice")
    first.close()
    clients = yield defer.gatherResults([n0.client(), n1.client()])
    yield defer.gatherResults([
        client.request({"message_type": "login", "username": "alice", "password": "secret"})
        for client in clients])
    assert (yield wait_until(lambda: sum(bool(c.of_type("kicked")) for c in clients) == 1))
    yield task.deferLater(reactor, 3 * HEARTBEAT, lambda: None)
    kept = [c for c in clients if not c.of_type("kicked")]
    assert len(kept) == 1
    holders = [node for node in (n0, n1) if node.root.router.session_of("alice") is not None]
    assert len(holders) == 1


@pytest_twisted.inlineCallbacks
def test_a_message_replayed_before_its_announcement_comes_is_written_once(cluster, monkeypatch):
    n0, n1, _ = cluster.nodes
    alice, bob = yield alice_and_bob(cluster)
    router = n0.root.router
    announce = router._flush
    monkeypatch.setattr(router, "_flush", lambda: None)  # announcements wait
    reply = yield send_text(alice, "alice", "bob", "once", "json")
    assert reply["content"] == "success"
    yield kill_redis_connections(n1)  # n1 replays bob's queue when it is back
    message = yield bob.next("word")
    assert message["content"] == "once"
    router._flush_call = None
    announce()
    yield task.deferLater(reactor, 0.5, lambda: None)
    assert not bob.of_type("word"), "written twice"
