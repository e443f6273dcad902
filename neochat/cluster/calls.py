"""Calls whose parties are on two nodes of a cluster.

A call lives on the node that issued its key, the caller's: its registry,
timers and relay (the callee is told that node's advertised relay address
or, for a keyed call, its cell port in ``cell_ip`` and ``cell_port``).
Before ringing a callee on another node, the caller's node asks the
callee's node (``call_ring``): that node checks the callee is online and not
busy, answers with the callee's address, and keeps a ``RemoteCall`` for it,
so that the callee's answer, hang-up or logout there is sent back to the
issuing node (``call_act``, ``call_end``), which does what it would do for a
local party.  When the call ends, the issuing node tells the callee's node
to forget it (``call_ended``).  Notices to the callee go through the
router like any other event.
"""

from dataclasses import dataclass

from twisted.internet import defer

from neochat.chat.calling import Calls, _account, friend_offline
from neochat.chat.calls import KEYED, CallError, new_key
from neochat.chat.errors import ChatError
from neochat.chat.model import Notice


@dataclass(frozen=True)
class RemoteCall:
    """A call of a local callee, issued by another node."""

    key: str
    caller: str
    callee: str
    keyed: bool
    node: str
    created_at: float  # on this node's clock, when it was rung

    def has_party(self, account):
        return account in (self.caller, self.callee)


class ClusterCalls(Calls):
    def __init__(self, cell, router):
        super().__init__(cell, router)
        self._remote = {}  # local callee -> {key: RemoteCall}
        self._callees_elsewhere = {}  # key of a call here -> (node, callee) of its callee on another node
        for op in ("call_ring", "call_act", "call_end", "call_ended"):
            router.answer(op, getattr(self, "_on_" + op))

    def _node_elsewhere(self, account):
        node = self.router.node_of(account)
        return None if node in (None, self.router.node_id) else node

    # -- the caller's side: ring a callee on another node ----------------------

    def request_voice(self, session, callee):
        node = self._node_elsewhere(callee)
        if node is None:
            return super().request_voice(session, callee)
        return self._request_remote_voice(session, callee, node)

    @defer.inlineCallbacks
    def _request_remote_voice(self, session, callee, node):
        caller = _account(session)
        key = new_key()
        callee_ip = yield self._ring_remote(node, key, caller, callee, keyed=False)
        try:
            _account(session)  # still logged in after the wait
            self._start_voice(caller, session.peer_host, callee, callee_ip, key=key)
        except ChatError:
            self._forget_remote(key)
            raise

    def ring(self, session, callee, key, message_type):
        node = self._node_elsewhere(callee)
        if node is None:
            return super().ring(session, callee, key, message_type)
        return self._ring_keyed_remote(session, callee, key, message_type, node)

    @defer.inlineCallbacks
    def _ring_keyed_remote(self, session, callee, key, message_type, node):
        caller = _account(session)
        self._claim(key, caller, callee)
        try:
            yield self._ring_remote(node, key, caller, callee, keyed=True)
        except ChatError:
            self.registry.discard(key)
            raise
        cell_ip, cell_port = self.cell.cell_address()
        self._deliver_ring(key, callee, Notice(message_type, {
            "user_account": caller, "cell_key": key, "cell_ip": cell_ip, "cell_port": str(cell_port)}))

    @defer.inlineCallbacks
    def _ring_remote(self, node, key, caller, callee, keyed):
        """The callee's address, once its node keeps the call for it."""
        callee_ip = yield self.router.ask(node, "call_ring", key=key, caller=caller, callee=callee, keyed=keyed)
        self._callees_elsewhere[key] = (node, callee)
        return callee_ip

    def _discard(self, key):
        super()._discard(key)
        self._forget_remote(key)

    def _forget_remote(self, key):
        node, callee = self._callees_elsewhere.pop(key, (None, None))
        if node is not None:
            self.router.tell(node, "call_ended", key=key, callee=callee)

    def _call_ended(self, call, reason):
        super()._call_ended(call, reason)
        self._forget_remote(call.key)

    # -- the callee's side: its calls on other nodes ---------------------------

    def _matching(self, account, keyed, named=(), key=None):
        remote = [
            call for call in self._remote.get(account, {}).values()
            if call.keyed == keyed and key in (None, call.key) and all(call.has_party(name) for name in named)
        ]
        return super()._matching(account, keyed, named, key) + remote

    def _act(self, call, account, action):
        if not isinstance(call, RemoteCall):
            return super()._act(call, account, action)
        asked = self.router.ask(call.node, "call_act", key=call.key, account=account, action=action)
        return asked.addErrback(self._remote_failed, call)

    def _remote_failed(self, failure, call):
        """The issuing node knows no such call, or did not answer: forget it here."""
        failure.trap(ChatError)
        if failure.value.stat in (404, 504):
            self._drop(call.callee, call.key)
        return failure

    def end_all_for(self, account, reason):
        super().end_all_for(account, reason)
        for call in self._remote.pop(account, {}).values():
            self.router.tell(call.node, "call_end", key=call.key, account=account, reason=reason)

    def _drop(self, callee, key):
        calls = self._remote.get(callee, {})
        calls.pop(key, None)
        if not calls:
            self._remote.pop(callee, None)

    # -- what other nodes ask ------------------------------------------------

    def _on_call_ring(self, node, key, caller, callee, keyed):
        """Another node rings a callee here: keep its call; the callee's IP."""
        session = self.router.session_of(callee)
        if session is None or not session.logged_in or session.closed:
            raise friend_offline()
        live = set(self.router.live_nodes()) | {node}  # a dead node's calls are forgotten
        calls = {k: call for k, call in self._remote.get(callee, {}).items() if call.node in live}
        if len(calls) + len(self.registry.calls_of(callee)) >= self.registry.limits.max_calls_per_user:
            raise CallError("busy")
        calls[key] = RemoteCall(key, caller, callee, keyed, node, self.registry.clock.seconds())
        self._remote[callee] = calls
        return session.peer_host

    def _on_call_act(self, node, key, account, action):
        """A party on another node answers or hangs up a call of this node."""
        call = self.registry.get(key)
        if call is None or (call.media == KEYED and key not in self._rung):
            raise CallError("no_such_call")
        if not call.has_party(account):
            raise CallError("not_party")
        self._act(call, account, action)

    def _on_call_end(self, node, key, account, reason):
        """A party on another node went offline."""
        call = self.registry.get(key)
        if call is not None and call.has_party(account):
            self.registry.close(key, reason)

    def _on_call_ended(self, node, key, callee):
        """The issuing node ended a call of a callee here."""
        self._drop(callee, key)
