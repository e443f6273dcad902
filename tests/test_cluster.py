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
