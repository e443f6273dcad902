"""The reference the chat benchmark compares NeoChat with: a bare Twisted
line router speaking the same seed-000 JSON lines, with no store, no
passwords, no presence.  ``register`` and ``login`` answer success; a
private ``word`` is decoded, re-encoded and written to its recipient.

    python bench/reference_router.py PORT
"""

import json
import sys

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

SUCCESS = {kind: json.dumps({"message_type": kind, "content": "success"}).encode() for kind in ("register", "login")}


class Router(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self, online):
        self.online = online
        self.account = None

    def lineReceived(self, line):
        message = json.loads(line)
        kind = message["message_type"]
        if kind == "login":
            self.account = message["username"]
            self.online[self.account] = self
        if kind in SUCCESS:
            self.sendLine(SUCCESS[kind])
        elif kind == "word":
            recipient = self.online.get(message["rece_user"])
            if recipient is not None:
                recipient.sendLine(json.dumps(message).encode())

    def connectionLost(self, reason):
        if self.online.get(self.account) is self:
            del self.online[self.account]


def main(port):
    online = {}
    factory = Factory.forProtocol(lambda: Router(online))
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
