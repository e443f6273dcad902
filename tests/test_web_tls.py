"""The web client behind TLS: an ssl: endpoint in --http serves the page,
the WebSocket and the files, with the message server's certificate options."""

import json
import os
import socket
import ssl
import struct

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.test_tls import self_signed


def over_tls(port):
    """The page's first bytes, then one register over a wss:// WebSocket."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    host = f"127.0.0.1:{port}"
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        page = sock.recv(100)
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as sock:
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: https://{host}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(4096)
        head, reply = response.split(b"\r\n\r\n", 1)
        message = b'{"message_type":"register","username":"tls","password":"pw"}'
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(message))
        sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(message)) + mask + masked)
        while len(reply) < 2 or len(reply) < 2 + reply[1]:
            reply += sock.recv(4096)
    return page, head.split(b"\r\n")[0], reply[2:2 + reply[1]]


@pytest.fixture
def settings(settings, tmp_path):
    key, cert = self_signed(tmp_path)
    settings.http = [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
    return settings


@pytest_twisted.inlineCallbacks
def test_page_and_websocket_over_an_ssl_endpoint(server):
    page, status, reply = yield threads.deferToThread(over_tls, server.http_port)
    assert page.startswith(b"HTTP/1.1 200 OK")
    assert status == b"HTTP/1.1 101 Switching Protocols"
    assert json.loads(reply) == {"message_type": "register", "content": "success"}
