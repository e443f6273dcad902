"""The admin socket: ``neochatctl`` talks to the running server through a
UNIX socket in the data dir, mode 0600 (only the server's user may use it).

One JSON object per line each way.  Request: ``{"verb": "kick", "args":
{"account": "+86101"}}``.  Reply: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "not online", "status": 404}``.
"""

import json

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from neochat.admin.operations import run
from neochat.chat.errors import ChatError

log = Logger()

SOCKET_STEM, SOCKET_SUFFIX = "admin", ".sock"
SOCKET_NAME = SOCKET_STEM + SOCKET_SUFFIX  # on a single node


def socket_path(settings):
    """The admin socket, in the data dir: one per node of a cluster, whose
    nodes share the data dir."""
    return settings.node_file(SOCKET_STEM, SOCKET_SUFFIX)


MAX_REQUEST = 64 * 1024


class AdminProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST

    def lineReceived(self, line):
        try:
            request = json.loads(line)
            verb, arguments = request["verb"], request.get("args") or {}
            if not isinstance(verb, str) or not isinstance(arguments, dict):
                raise ValueError(line)
        except (ValueError, KeyError, TypeError):
            self._reply({"ok": False, "error": "bad request", "status": 400})
            return
        done = run(self.factory.administration, verb, arguments)
        done.addCallbacks(lambda result: {"ok": True, "result": result}, self._failed, errbackArgs=(verb,))
        done.addCallback(self._reply)

    def _failed(self, failure, verb):
        if failure.check(ChatError):
            return {"ok": False, "error": failure.value.reason, "status": failure.value.stat}
        log.failure("admin command {verb} failed", failure, verb=verb)
        return {"ok": False, "error": f"internal error: {failure.getErrorMessage()}", "status": 500}

    def _reply(self, reply):
        self.sendLine(json.dumps(reply, default=str).encode())

    def lineLengthExceeded(self, line):
        self._reply({"ok": False, "error": "request too long", "status": 400})
        self.transport.loseConnection()


class AdminService(service.Service):
    """Listens on ``<data dir>/admin.sock``; a stale socket file of a
    server that died is replaced."""

    def __init__(self, administration, path, reactor):
        self.factory = Factory.forProtocol(AdminProtocol)
        self.factory.administration = administration
        self.path = path
        self.endpoint = UNIXServerEndpoint(reactor, str(path), mode=0o600, wantPID=True)
        self.port = None

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        self.port = yield self.endpoint.listen(self.factory)
        log.info("admin socket at {path}", path=str(self.path))

    def stopService(self):
        super().stopService()
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)
