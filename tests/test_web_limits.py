"""The message server's connection caps count WebSockets too."""

import dataclasses

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.test_web_gateway import handshake
from tests.web_clients import WsClient


@pytest.fixture
def settings(settings):
    settings.limits = dataclasses.replace(settings.limits, connections_per_address=2)
    return settings


@pytest_twisted.inlineCallbacks
def test_websockets_and_tcp_share_the_per_address_cap(server):
    for _ in range(3):  # refused handshakes hold no place
        refused = yield threads.deferToThread(handshake, server.http_port, "http://evil.example")
        assert " 403 " in refused + " "
    tcp = yield server.client()
    ws = yield WsClient.connect(server.http_port)
    full = yield threads.deferToThread(handshake, server.http_port, None)
    assert " 503 " in full + " "
    yield ws.register_and_login("alice")  # the admitted ones work
    yield ws.close()
    again = yield WsClient.connect(server.http_port)  # its place is free again
    yield again.register_and_login("bob")
    tcp.close()
