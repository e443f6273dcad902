"""No header request, however mangled, leaves a connection that stops answering:
random mutations of valid seed-002 requests, each followed by a valid request
that must get its reply (the mangled one may swallow it as a body, which the
server cuts off once the client goes quiet; the client then asks again)."""

import socket

import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import threads

from neochat.services.header_dialect import HeaderDialect
from neochat.wire.headers import HeaderDecoder

ACCOUNT = "mutant"
VALID = [
    b"message_type: get_user_info\nuser_account: mutant\n\n",
    b"user_account: mutant\nmessage_type: text\ntext: hi\nfriends: mutant\n\n",
    b"user_account: mutant\nmessage_type: send_message\nfriends: mutant\ncontent-length: 5\n\nab\ncd",
    b"message_type: get_old_message\nwith_user: mutant\nnumber: 2\n\n",
    b"message_type: get_message\nnumber: 1\n\n",
    b"task_id: 1\nuser_account: mutant\ntime: 10012312312311\ncontent-length: 4\n\n0x00",
    b"user_account: mutant\nfriends: mutant\n\n",
    b"user_account: mutant\nmessage_type: voice\nfriends: mutant\ntext: v\n\n",
    b"message_type: set_user_info\nuser_name: m\nsex: male\n\n",
]
TOKENS = [b"\n", b"\r\n", b"\r", b":", b" : ", b"\x00", b"\xff", b"%", b"%2B", b"\n\n", b"content-length: 99\n",
          b"content-length: x\n", b"message_type: \n", b"task_id: 9\n", b"friends: a b,c\n", b"MESSAGE_TYPE: TEXT\n"]
PROBE = b"\n\nmessage_type: get_current_user\n\n"
ATTEMPTS = 3
WAIT = 3  # seconds per attempt; a body the probe fell into is cut off after body_idle_timeout


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["delete", "insert", "token", "replace", "duplicate", "truncate"]))
        end = min(len(data), at + draw(st.integers(1, 12)))
        if kind == "delete":
            del data[at:end]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            data[at:at] = data[at:end]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.decoder = HeaderDecoder()

    def send(self, data):
        self.sock.sendall(data)

    def wait_for(self, message_type):
        """True once a reply of ``message_type`` came; False after WAIT seconds without one."""
        try:
            while chunk := self.sock.recv(65536):
                for item in self.decoder.feed(chunk):
                    if item.headers.get("message_type") == message_type and "stat" in item.headers:
                        return True
        except socket.timeout:
            return False
        raise AssertionError("the server closed the connection")


def mutations_never_leave_a_deaf_connection(port):
    setup = Connection(port)
    setup.send(b"message_type: registered\nuser_account: mutant\nuser_password: pw\n\n")
    assert any(setup.wait_for("registered") for _ in range(ATTEMPTS))
    setup.sock.close()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutated())
    def check(request):
        connection = Connection(port)
        try:
            connection.send(b"message_type: login\nuser_account: mutant\nuser_password: pw\n\n")
            assert any(connection.wait_for("login") for _ in range(ATTEMPTS))  # a busy machine is slow
            connection.send(request)
            for _ in range(ATTEMPTS):
                connection.send(PROBE)
                if connection.wait_for("get_current_user"):
                    return
            raise AssertionError(f"no answer after {request!r}")
        finally:
            connection.sock.close()

    check()


@pytest_twisted.inlineCallbacks
def test_mutated_header_requests_never_leave_a_connection_deaf(server, monkeypatch):
    monkeypatch.setattr(HeaderDialect, "body_idle_timeout", 0.3)
    yield threads.deferToThread(mutations_never_leave_a_deaf_connection, server.port)
