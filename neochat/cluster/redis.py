"""The two Redis connections of a node, through txredisapi (Twisted-native):
one publishes and runs commands, the other only subscribes (Synapse's
shape).  Both reconnect by themselves with exponential backoff; the
subscriber tells its owner each time it is connected again."""

from urllib.parse import urlsplit

import txredisapi
from twisted.internet.endpoints import HostnameEndpoint

FIRST_RETRY, LAST_RETRY = 0.5, 10.0  # seconds between reconnection attempts, backing off


def parse_url(url):
    """redis://HOST[:PORT][/DB] -> (host, port, db)."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url}")
    db = parts.path.strip("/")
    return parts.hostname or "127.0.0.1", parts.port or 6379, int(db) if db else 0


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message):
        self.factory.owner.received(channel, message)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _Subscriber
    initialDelay, maxDelay = FIRST_RETRY, LAST_RETRY

    def __init__(self, owner):
        super().__init__(isLazy=True)
        self.owner = owner

    def addConnection(self, conn):
        super().addConnection(conn)
        if conn.connected and not self.disconnectCalled:
            self.owner.subscribed(conn)


class Redis:
    """``owner`` gets ``received(channel, text)`` and ``subscribed(connection)``."""

    def __init__(self, url, owner, reactor):
        host, port, db = parse_url(url)
        self.commands = txredisapi.lazyConnection(host, port, db, convertNumbers=False)
        self.commands._factory.initialDelay, self.commands._factory.maxDelay = FIRST_RETRY, LAST_RETRY
        self._subscriber = _SubscriberFactory(owner)
        self._subscriber.startConnecting(HostnameEndpoint(reactor, host, port))

    def connected(self):
        """Whether commands go out now (else they wait for the reconnection)."""
        return self.commands._factory.size > 0

    def connections(self):
        """The live protocol instances (tests kill them from the server side)."""
        return list(self.commands._factory.pool) + list(self._subscriber.pool)

    def close(self):
        return self._subscriber.disconnect().addBoth(lambda _: self.commands.disconnect())
