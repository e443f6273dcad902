"""Test clients of the web gateway: the JSON client's API over a WebSocket,
and blocking HTTP helpers for the file endpoints (run in a thread)."""

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.clients import JsonClient


class _Socket(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.client.socket = self
        self.factory.client.opened.callback(self.factory.client)

    def onMessage(self, payload, isBinary):
        client = self.factory.client
        client.binary.append(payload) if isBinary else client.deliver([json.loads(payload)])

    def onClose(self, wasClean, code, reason):
        client = self.factory.client
        client.close_code = code
        if not client.opened.called:
            client.opened.errback(ConnectionError(f"WebSocket refused: {code} {reason}"))
        client.connectionLost(None)


class WsClient(JsonClient):
    """Each ``send`` is one text message; each message received one object."""

    def __init__(self):
        super().__init__()
        self.socket = None
        self.opened = defer.Deferred()
        self.binary = []  # binary messages (in-band file bytes)
        self.close_code = None

    @classmethod
    def connect(cls, port, origin=None):
        client = cls()
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", origin=origin)
        factory.protocol = _Socket
        factory.client = client
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory).addErrback(client.opened.errback)
        return client.opened

    def send(self, obj, newline=True):
        self.send_text(json.dumps(obj))

    def send_text(self, text):
        self.socket.sendMessage(text.encode("utf-8"), isBinary=False)

    def send_raw(self, data):
        self.socket.sendMessage(data, isBinary=True)

    def close(self):
        if self.socket is not None and not self.closed.called:
            self.socket.sendClose()
        return self.closed


def http(port, method, path, body=None, headers=()):
    """(status, headers, body bytes) of one blocking HTTP request."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=dict(headers)
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def upload(port, token, name, data):
    headers = {"X-File-Name": quote(name)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http(port, "POST", "/files", data, headers)


def download(port, token, name):
    return http(port, "GET", f"/files/{quote(name, safe='')}?token={token}")
