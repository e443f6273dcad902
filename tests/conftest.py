"""Fixtures: a fresh database per test (SQLite file, and MariaDB when
NEOCHAT_TEST_MYSQL is set), and a NeoChat server on 127.0.0.1 port 0."""

import os
import socket
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from neochat.chat import audit
from neochat.chat.throttle import ThrottleSettings
from neochat.config import Settings
from neochat.services.ftp import FtpSettings
from neochat.services.root import build_service
from tests.clients import HeaderClient, JsonClient
from tests.udp import LOCAL, free_port_range, wait_for

MYSQL_VARIABLE = "NEOCHAT_TEST_MYSQL"  # e.g. mysql://root@127.0.0.1:3306/
REDIS = ("127.0.0.1", 6379)  # the cluster tests'
REDIS_DB = 9  # away from anything else on the shared server; keys are prefixed per test too


def _mysql_database():
    """Create a throwaway MariaDB database; returns (url, drop)."""
    base = os.environ.get(MYSQL_VARIABLE)
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but ${MYSQL_VARIABLE} is not set: MariaDB tests must run")
        pytest.skip(f"set ${MYSQL_VARIABLE} to run against MariaDB")
    import MySQLdb

    parts = urlsplit(base)
    connect = dict(
        host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
        user=parts.username or "root", passwd=parts.password or "",
    )
    name = "neochat_t_" + uuid.uuid4().hex[:12]
    conn = MySQLdb.connect(**connect)
    conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()

    def drop():
        conn = MySQLdb.connect(**connect)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()

    netloc = parts.netloc.rstrip("/")
    return f"mysql://{netloc}/{name}", drop


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'test.sqlite'}"
        return
    url, drop = _mysql_database()
    yield url
    drop()


@pytest.fixture
def settings(db_url, tmp_path):
    return Settings(
        listen=["tcp:0:interface=127.0.0.1"],
        http=["tcp:0:interface=127.0.0.1"],
        db_url=db_url,
        data_dir=tmp_path / "data",
        hash_time_cost=1,
        hash_memory_kib=1024,
        cell_port=0,
        cell_interface=LOCAL,
        relay_ports=(0, 0),
        client_ports=free_port_range(8),
        ftp=FtpSettings(interface=LOCAL, port=0),
        # Every test client registers from 127.0.0.1.
        throttle=ThrottleSettings(registrations_per_address=100_000),
    )


class Tripped:
    """How often each limit tripped since this was made (the counts behind
    ``neochat_limits_tripped_total``)."""

    def __init__(self):
        self.before = audit.counts.copy()

    def __getitem__(self, limit):
        return audit.counts[("limit", limit)] - self.before[("limit", limit)]


class RunningServer:
    def __init__(self, root):
        self.root = root
        self.chat = root.chat
        self.clients = []

    @property
    def port(self):
        return self.root.chat_service.ports[0].getHost().port

    @property
    def http_port(self):
        return self.root.web_service.ports[0].getHost().port

    @defer.inlineCallbacks
    def client(self, dialect="json"):
        kind = {"json": JsonClient, "header": HeaderClient}[dialect]
        client = yield kind.connect(self.port)
        self.clients.append(client)
        return client

    @defer.inlineCallbacks
    def logged_in(self, *names, dialect="json", **extra):
        clients = []
        for name in names:
            client = yield self.client(dialect)
            yield client.register_and_login(name, **extra)
            clients.append(client)
        return clients

    def offline(self, account):
        """Fires once the server has taken ``account`` offline: a client's
        close returns before the server has seen it."""
        return defer.ensureDeferred(wait_for(lambda: not self.root.router.is_online(account)))

    @defer.inlineCallbacks
    def stop(self):
        for client in self.clients:
            client.close()
        if self.root.running:
            yield self.root.stopService()


@pytest_twisted.async_yield_fixture
async def server(settings):
    root = build_service(settings, reactor)
    root.startService()
    await root.ready
    running = RunningServer(root)
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def serve(settings):
    """``await serve(name=value, ...)``: a server with those limits changed."""
    running = []

    async def start(**limits):
        settings.limits = replace(settings.limits, **limits)
        root = build_service(settings, reactor)
        root.startService()
        await root.ready
        running.append(RunningServer(root))
        return running[-1]

    yield start
    for server in running:
        await server.stop()


@pytest.fixture(params=["json", "header"])
def dialect(request):
    return request.param


def need_redis():
    """Skip (fail with CI=true) unless Redis answers on 127.0.0.1:6379."""
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Redis on 127.0.0.1:6379: cluster tests must run")
        pytest.skip("no Redis on 127.0.0.1:6379")


@pytest.fixture
def cluster_db():
    """A new MariaDB database for cluster nodes, if Redis is up: its URL.  (A
    skip from a plain fixture: pytest-twisted's async ones turn it into errors.)"""
    need_redis()
    db_url, drop = _mysql_database()
    yield db_url
    drop()
