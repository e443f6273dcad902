"""The live side of ``neochatctl``: one request over the running server's
admin socket (neochat/services/admin.py)."""

import json
import socket

TIMEOUT = 60.0


class NoServer(Exception):
    """No server answers on the admin socket."""


class Refused(Exception):
    """The server refused the command: ``reason`` and an HTTP-like ``status``."""

    def __init__(self, reason, status):
        super().__init__(reason)
        self.reason, self.status = reason, status


def server_running(path):
    try:
        with _connect(path):
            return True
    except NoServer:
        return False


def request(path, verb, arguments):
    """The result of ``verb`` run by the server; NoServer or Refused."""
    with _connect(path) as sock:
        sock.sendall(json.dumps({"verb": verb, "args": arguments}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise NoServer(f"the server closed the admin socket {path} without an answer")
            reply += chunk
    answer = json.loads(reply)
    if not answer["ok"]:
        raise Refused(answer["error"], answer["status"])
    return answer["result"]


def _connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError as error:
        sock.close()
        raise NoServer(f"no server answers on {path} ({error.strerror})") from None
    return sock
