"""Requests from one node to another over Redis pub/sub, and their replies
(calls whose parties are on two nodes, the admin tool's live verbs).

Each node listens on its channel ``ask:ID``.  A request is
``{"from": node, "id": n, "op": name, "args": {...}}``; the answer goes to
the asker's channel as ``{"id": n, "result": ...}`` or ``{"id": n, "error":
[reason, stat]}``.  A request without ``id`` is a notice: nobody answers it.
A handler gets the asking node's id and the arguments, and returns a
JSON-ready value (or a Deferred of one) or raises ChatError.

Pub/sub delivers at most once, and a node may die: a request not answered
within ``timeout`` fails (504), and at most ``max_pending`` wait at once
(503 past that).
"""

import json

from twisted.internet import defer
from twisted.logger import Logger

from neochat.chat.errors import BadRequest, ChatError

log = Logger()

MAX_PENDING = 1000  # requests to other nodes waiting for their answer


class NoAnswer(ChatError):
    stat = 504

    def __init__(self, node):
        super().__init__(f"node {node} did not answer")
        self.node = node


class Asking:
    """``publish(channel, text)`` sends on a channel under the prefix."""

    def __init__(self, node_id, publish, reactor, timeout, max_pending=MAX_PENDING):
        self.node_id = node_id
        self.publish = publish
        self.reactor = reactor
        self.timeout = timeout
        self.max_pending = max_pending
        self._handlers = {}
        self._pending = {}  # id -> Deferred of the answer
        self._last_id = 0

    def channel(self, node):
        return f"ask:{node}"

    def answer(self, op, handler):
        """``handler(asking_node, **args)`` answers ``op`` on this node."""
        self._handlers[op] = handler

    def ask(self, node, op, **args):
        """Deferred of ``op``'s result on ``node`` (this one runs it at once)."""
        if node == self.node_id:
            return self._run(node, op, args)
        if len(self._pending) >= self.max_pending:
            return defer.fail(ChatError("too many requests to other nodes waiting", 503))
        self._last_id += 1
        request_id = self._last_id
        answered = defer.Deferred()
        self._pending[request_id] = answered
        answered.addTimeout(self.timeout, self.reactor, onTimeoutCancel=lambda *_: self._gave_up(request_id, node))
        self._send(node, {"from": self.node_id, "id": request_id, "op": op, "args": args})
        return answered

    def tell(self, node, op, **args):
        """``op`` on ``node``, with no answer (and no word if it is lost)."""
        if node == self.node_id:
            self._run(node, op, args).addErrback(lambda failure: log.failure("{op} failed", failure, op=op))
        else:
            self._send(node, {"from": self.node_id, "op": op, "args": args})

    def _gave_up(self, request_id, node):
        self._pending.pop(request_id, None)
        raise NoAnswer(node)

    def _send(self, node, message):
        self.publish(self.channel(node), json.dumps(message, separators=(",", ":")))

    def _run(self, node, op, args):
        handler = self._handlers.get(op)
        if handler is None:
            return defer.fail(BadRequest(f"unknown request {op!r} between nodes"))
        return defer.maybeDeferred(handler, node, **args)

    def received(self, text):
        """A message on this node's channel: a request, or an answer to one."""
        message = json.loads(text)
        if "op" not in message:
            self._settle(message)
            return
        done = self._run(message["from"], message["op"], message["args"])
        if "id" not in message:
            done.addErrback(lambda failure: log.failure("{op} from {node} failed", failure,
                                                        op=message["op"], node=message["from"]))
            return
        done.addCallbacks(lambda result: {"result": result}, self._refusal, errbackArgs=(message["op"],))
        done.addCallback(lambda answer: self._send(message["from"], dict(answer, id=message["id"])))

    @staticmethod
    def _refusal(failure, op):
        if failure.check(ChatError):
            return {"error": [failure.value.reason, failure.value.stat]}
        log.failure("{op} asked by another node failed", failure, op=op)
        return {"error": [f"internal error: {failure.getErrorMessage()}", 500]}

    def _settle(self, message):
        answered = self._pending.pop(message["id"], None)
        if answered is None:
            return  # answered after the asker gave up
        if "error" in message:
            answered.errback(ChatError(*message["error"]))
        else:
            answered.callback(message["result"])
