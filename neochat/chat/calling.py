"""Call signalling: the call messages of both seeds, on top of the cell server.

Seed 000 (JSON ``voice``): the server creates the call and hands each party
its four address fields; the media is relayed or goes peer to peer, as the
cell server's mode says.  Seed 002 (``call``, ``videocall``, ``cell``): the
caller brings a key and the media goes through the keyed cell port.

Either way only the callee accepts, either party may end the call, and
whatever ends it (reject, hang-up, timeout, idle, logout, dropped connection,
shutdown), each party that did not end it is told, in the messages of the
seed the call belongs to.  docs/protocol.md ("Calls") lists them.  Nothing here
touches a socket: this talks to the call registry and the router.
"""

from neochat.chat import audit
from neochat.chat.calls import KEYED, REQUESTED, CallError
from neochat.chat.errors import ChatError, NotLoggedIn
from neochat.chat.model import Notice

VOICE = "voice"  # the seed-000 message, and the kind of its calls
KEYED_KINDS = ("call", "videocall")  # seed 002
ACCEPT, REJECT, CLOSE = "accept", "reject", "close"  # what a party does to a call


def friend_offline():
    return ChatError("friend offline", 480)


class Calls:
    """``cell`` is the CellService: its registry, voice calls and address fields."""

    def __init__(self, cell, router):
        self.cell = cell
        self.registry = cell.registry
        self.router = router
        self.registry.on_call_ended = self._call_ended
        self._ended_by = None  # the party ending a call just now: it needs no notice
        self._ended_word = None  # and the word it used
        self._rung = set()  # keys of keyed calls whose callee was rung: the others are nobody's business

    # -- seed 000: voice ---------------------------------------------------

    def request_voice(self, session, callee):
        """Start a call and ring the callee, who gets its four address fields."""
        caller = _account(session)
        callee_session = self.router.session_of(callee)
        if callee_session is None:
            raise friend_offline()
        self._start_voice(caller, session.peer_host, callee, callee_session.peer_host)

    def _start_voice(self, caller, caller_ip, callee, callee_ip, key=None):
        call = self.cell.start_voice_call(caller, callee, caller_ip, callee_ip, VOICE, key=key)
        self.router.deliver(callee, self._voice_notice(call, "request", callee))

    def answer_voice(self, session, named, accept):
        """The callee accepts (the caller gets its four fields) or rejects the
        newest voice call to it that has every ``named`` account in it (in
        either role: the seed's accept names both parties, clients differ on
        which is which, and a call is found without names too).  A caller's
        reject cancels its call, as ``close`` does."""
        callee = _account(session)
        calls = self._matching(callee, keyed=False, named=named)
        incoming = [call for call in calls if call.callee == callee]
        if not incoming:
            if calls and not accept:
                return self._act(_newest(calls), callee, CLOSE)
            raise CallError("not_party" if calls else "no_such_call")
        return self._act(_newest(incoming), callee, ACCEPT if accept else REJECT)

    def close_voice(self, session, named=()):
        """Hang up the newest voice call that has the account and every ``named`` account in it."""
        account = _account(session)
        return self._act(self._find(account, keyed=False, named=named), account, CLOSE)

    def _voice_notice(self, call, content, party=None):
        fields = {"content": content, "send_user": call.caller, "rece_user": call.callee}
        if party is not None:
            fields.update(self.cell.party_addresses(call.key, party))
        return Notice(VOICE, fields)

    # -- seed 002: call, videocall, cell -----------------------------------

    def new_key(self, session, callee, kind="call"):
        """A key for a keyed call, as the cell port's key request gives, for a logged-in caller."""
        caller = _account(session)
        if kind not in KEYED_KINDS:
            raise CallError("bad_request")
        return self.registry.request_key(caller, callee, kind, source_ip=session.peer_host)

    def ring(self, session, callee, key, message_type):
        """Forward the caller's ``call``/``videocall`` with its key, which makes
        an unclaimed key a call; a callee offline ends the call."""
        caller = _account(session)
        self._claim(key, caller, callee)
        self._deliver_ring(key, callee, Notice(message_type, {"user_account": caller, "cell_key": key}))

    def _claim(self, key, caller, callee):
        """The caller's unclaimed key or unanswered keyed call, as a call."""
        call = self.registry.get(key) or self.registry.claim(key, caller, callee)
        if call.media != KEYED:
            raise CallError("no_such_call")
        if (call.caller, call.callee) != (caller, callee):
            raise CallError("not_party")
        if call.state != REQUESTED:
            raise CallError("bad_state")
        return call

    def _deliver_ring(self, key, callee, notice):
        if not self.router.deliver(callee, notice):
            self._discard(key)
            raise friend_offline()
        self._rung.add(key)

    def _discard(self, key):
        """End a call nobody was told of."""
        self.registry.discard(key)

    def answer_call(self, session, other, accept, key=None):
        """``cell_type`` 200 from the callee accepts; 404 from either party ends the call.

        The call is ``key``'s, or the newest rung call between the two.
        """
        account = _account(session)
        return self._act(self._find(account, keyed=True, named=(other,), key=key), account, ACCEPT if accept else CLOSE)

    def _cell_notice(self, call, account, cell_type, **extra):
        return Notice("cell", {"user_account": account, "cell_type": cell_type,
                               "friends": call.peer_of(account), "cell_key": call.key, **extra})

    # -- both --------------------------------------------------------------

    def end_all_for(self, account, reason):
        """The account went offline: end its calls; the other parties are told."""
        self.registry.close_all_for(account, reason)

    def _find(self, account, keyed, named=(), key=None):
        """The account's newest voice call, or rung keyed call, with ``key`` and the named accounts."""
        calls = self._matching(account, keyed, named, key)
        if not calls:
            raise CallError("no_such_call")
        return _newest(calls)

    def _matching(self, account, keyed, named=(), key=None):
        return [
            call for call in self.registry.calls_of(account)
            if (call.key in self._rung if keyed else call.media != KEYED)
            and key in (None, call.key) and all(call.has_party(name) for name in named)
        ]

    def _act(self, call, account, action):
        """The account answers (ACCEPT: the caller is told; REJECT, seed 000's
        decline) or hangs up (CLOSE)."""
        if action == ACCEPT:
            self.registry.accept(call.key, account)
            audit.call_started(call.caller, call.callee, call.kind)
            self.router.deliver(call.caller, self._accepted_notice(call))
        else:
            self._hang_up(call, account, word=action)

    def _accepted_notice(self, call):
        if call.media == KEYED:
            return self._cell_notice(call, call.caller, "200")
        return self._voice_notice(call, "accept", call.caller)

    def _hang_up(self, call, account, word=CLOSE):
        """``word`` is what the account said (seed 000: ``close`` or ``reject``):
        the other party hears the same word."""
        reason = "rejected" if account == call.callee and call.state == REQUESTED else "closed"
        self._ended_by, self._ended_word = account, word
        try:
            self.registry.close(call.key, reason, by_account=account)
        finally:
            self._ended_by = self._ended_word = None

    def _call_ended(self, call, reason):
        audit.call_ended(call.caller, call.callee, call.kind, reason)
        announced = call.media != KEYED or call.key in self._rung
        self._rung.discard(call.key)
        if not announced:
            return  # a key no call message used (perhaps asked for in someone else's name)
        for account in (call.caller, call.callee):
            if account != self._ended_by:
                self.router.deliver(account, self._ended_notice(call, account, reason))

    def _ended_notice(self, call, account, reason):
        if call.media == KEYED:
            return self._cell_notice(call, account, "404", reason=reason)
        if reason == "rejected" and self._ended_word == REJECT:
            return self._voice_notice(call, "reject")
        if reason in ("closed", "rejected"):  # the other party hung up: the seed's message as it is
            return Notice(VOICE, {"content": "close"})
        return Notice(VOICE, {"content": "close", "reason": reason})


def _newest(calls):
    return max(calls, key=lambda call: call.created_at)


def _account(session):
    """The caller's account; requests a dropped connection left behind start nothing."""
    if not session.logged_in or session.closed:
        raise NotLoggedIn()
    return session.account
