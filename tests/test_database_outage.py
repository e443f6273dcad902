"""MariaDB going away and coming back, through a TCP proxy the test cuts and
restores (the shared MariaDB server itself keeps running)."""

from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import globalLogPublisher
from twisted.protocols import portforward

from tests.conftest import _mysql_database
from tests.test_admin_metrics import grown, scraped
from tests.test_logins import serve


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the database until ``cut``; ``restore``
    listens on the same port again."""

    def __init__(self, host, port):
        self.factory = portforward.ProxyFactory(host, port)
        self.factory.protocol = self._tracked(portforward.ProxyServer)
        self.connections = set()
        self.listening = None
        self.port = 0

    def _tracked(self, base):
        proxy = self

        class Tracked(base):
            def connectionMade(self):
                proxy.connections.add(self)
                super().connectionMade()

            def connectionLost(self, reason):
                proxy.connections.discard(self)
                super().connectionLost(reason)

        return Tracked

    async def restore(self):
        endpoint = TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1")
        self.listening = await endpoint.listen(self.factory)
        self.port = self.listening.getHost().port

    async def cut(self):
        await self.listening.stopListening()
        for connection in list(self.connections):
            connection.transport.abortConnection()
            if connection.peer is not None:
                connection.peer.transport.abortConnection()


@pytest.fixture
def db_url():
    """MariaDB only: SQLite has no connection to lose."""
    url, drop = _mysql_database()
    yield url
    drop()


@pytest_twisted.async_yield_fixture
async def outage(settings, db_url):
    """(server, proxy): a server whose database connections go through the proxy."""
    parts = urlsplit(db_url)
    proxy = CuttableProxy(parts.hostname, parts.port or 3306)
    await proxy.restore()
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    settings.db_url = urlunsplit(parts._replace(netloc=netloc))
    settings.db_retry_seconds = 1.5
    settings.metrics = "tcp:0:interface=127.0.0.1"
    running = await serve(settings)
    yield running, proxy
    if not proxy.listening.connected:
        await proxy.restore()
    await running.stop()
    await proxy.cut()



@pytest_twisted.ensureDeferred
async def test_a_short_outage_is_ridden_out_and_nothing_is_lost(outage):
    server, proxy = outage
    before = await scraped(server)
    alice, bob = await server.logged_in("alice", "bob", acks=True)
    await proxy.cut()
    alice.send({"message_type": "word", "chat_type": "private", "send_user": "alice",
                "rece_user": "bob", "content": "during the outage"})
    await task.deferLater(reactor, 0.5, lambda: None)
    await proxy.restore()
    reply = await alice.next("word", reply=True)
    assert reply["content"] == "success" and reply["id"]
    message = await bob.next("word")
    assert message["content"] == "during the outage"
    after = await scraped(server)
    assert grown(before, after, "neochat_database_retries_total", reason="connection") >= 1
    assert grown(before, after, "neochat_database_retries_total", reason="deadlock") == 0


@pytest_twisted.ensureDeferred
async def test_a_long_outage_answers_a_temporary_error_logged_once_then_recovers(outage, dialect):
    server, proxy = outage
    client = await server.client(dialect)
    events = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        await proxy.cut()
        for name in ("late", "later"):
            if dialect == "json":
                reply = await client.request({"message_type": "register", "username": name, "password": "pw"})
            else:
                reply = await client.request(
                    {"message_type": "registered", "user_account": name, "user_password": "pw"})
                assert reply["stat"] == "503"
            assert reply["reason"] == "database unavailable, retry"
        await proxy.restore()
        await client.register_and_login("late")
    finally:
        globalLogPublisher.removeObserver(observer)
    outage_logs = [event for event in events if "unreachable" in event.get("log_format", "")]
    back_logs = [event for event in events if "reachable again" in event.get("log_format", "")]
    assert (len(outage_logs), len(back_logs)) == (1, 1)
