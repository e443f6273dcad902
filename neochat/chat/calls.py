"""Calls between two accounts: keys, states, limits and timeouts, with no I/O.

A call is requested, then accepted by the callee, then closed.  A key asked
for on the cell port (no login needed) is not a call yet: it waits, unclaimed,
in a small pool of its own until the caller's logged-in session rings with it,
so strangers' key requests touch no account's calls and no call capacity.  Its media may
flow only while it is accepted.  Closing a call runs the cleanups its media
owner registered (relay ports, client ports) and then ``on_call_ended``.
docs/protocol.md ("Calls") describes the limits, timeouts and reasons.
"""

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from twisted.logger import Logger

from neochat.chat.errors import ChatError
from neochat.chat.overrides import override

KINDS = ("voice", "call", "videocall")
REQUESTED, ACCEPTED, CLOSED = "requested", "accepted", "closed"
KEYED, RELAY, P2P = "keyed", "relay", "p2p"  # how a call's media travels
MAX_ACCOUNT_LENGTH = 100  # the user table's varchar(100)

log = Logger()


class CallError(ChatError):
    """A refused call operation; ``reason`` is stable and short, ``stat`` HTTP-like."""

    STATS = {
        "bad_request": 400,
        "not_party": 403,
        "no_such_call": 404,
        "bad_state": 409,
        "rate_limited": 429,
        "busy": 486,
        "server_full": 503,
    }

    def __init__(self, reason):
        super().__init__(reason, self.STATS[reason])


@dataclass(frozen=True)
class MediaCaps:
    """Per sending party: the largest datagram and the sustained rates it may send.

    Bursts of up to one second's worth of packets and bytes are allowed.
    """

    max_datagram: int
    packets_per_second: float
    bytes_per_second: float


@dataclass(frozen=True)
class CallLimits:
    max_calls_per_user: int = 2
    max_calls_total: int = 1000
    request_timeout: float = 30.0  # an unanswered request ends after this many seconds
    idle_timeout: float = 60.0  # an accepted call with no media either way ends after this
    key_requests_per_ip: int = 10  # per source IP in each key_request_window
    key_request_window: float = 10.0
    unclaimed_keys_per_ip: int = 4  # keys no call message used yet, per source IP
    unclaimed_keys_total: int = 256
    unclaimed_key_timeout: float = 30.0  # an unclaimed key is forgotten after this
    audio: MediaCaps = MediaCaps(max_datagram=1400, packets_per_second=200, bytes_per_second=64_000)
    video: MediaCaps = MediaCaps(max_datagram=8192, packets_per_second=2000, bytes_per_second=1_250_000)

    def caps_for(self, kind):
        return self.video if kind == "videocall" else self.audio

    def override(self, name, text):
        """A copy with one limit changed: ``idle_timeout``, ``audio.max_datagram``..."""
        return override(self, name, text, "call limit")


class TokenBucket:
    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate, now):
        self.rate = rate
        self.tokens = rate  # starts full: one second's worth
        self.stamp = now

    def take(self, amount, now):
        tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True


class WindowLimiter:
    """At most ``limit`` events per source in each fixed window of ``window`` seconds.

    The counts are dropped wholesale when a window ends, so memory stays bounded
    by the sources seen in one window.
    """

    def __init__(self, limit, window, clock):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._started = clock.seconds()
        self._counts = {}

    def hit(self, source):
        """Count one event from ``source``; returns its count in the current window."""
        now = self.clock.seconds()
        if now - self._started >= self.window:
            self._counts.clear()
            self._started = now
        count = self._counts.get(source, 0) + 1
        self._counts[source] = count
        return count


class Leg:
    """One party's end of a call's media, filled in and used by the relay.

    ``advertised`` is where the party receives (your_ip, your_port), ``latched``
    the source its first accepted datagram came from, ``out`` the transport that
    sends to it.
    """

    __slots__ = ("account", "peer", "packets", "octets", "ip", "client_port",
                 "relay_port", "advertised", "latched", "out")

    def __init__(self, account, caps, now):
        self.account = account
        self.peer = None
        self.packets = TokenBucket(caps.packets_per_second, now)
        self.octets = TokenBucket(caps.bytes_per_second, now)
        self.ip = None
        self.client_port = None
        self.relay_port = None
        self.advertised = None
        self.latched = None
        self.out = None

    def admit(self, size, now):
        return self.packets.take(1, now) and self.octets.take(size, now)


@dataclass(frozen=True)
class UnclaimedKey:
    caller: str
    callee: str
    kind: str
    source_ip: str
    created_at: float


class Call:
    def __init__(self, key, caller, callee, kind, media, caps, now):
        self.key = key
        self.caller = caller
        self.callee = callee
        self.kind = kind
        self.media = media
        self.state = REQUESTED
        self.max_datagram = caps.max_datagram
        self.created_at = now
        self.last_activity = now
        self.caller_leg = Leg(caller, caps, now)
        self.callee_leg = Leg(callee, caps, now)
        self.caller_leg.peer = self.callee_leg
        self.callee_leg.peer = self.caller_leg
        self.timer = None  # the pending request or idle timeout
        self.cleanups = []  # run once when the call ends

    def has_party(self, account):
        return account in (self.caller, self.callee)

    def leg_of(self, account):
        if account == self.caller:
            return self.caller_leg
        if account == self.callee:
            return self.callee_leg
        raise CallError("not_party")

    def peer_of(self, account):
        return self.leg_of(account).peer.account

    def __repr__(self):
        return f"<Call {self.kind} {self.caller}->{self.callee} {self.state}>"


class CallRegistry:
    """Every live call, by key and by account.

    Set ``on_call_ended(call, reason)`` to hear about every call that ends, whatever
    ended it: ``closed``/``rejected``/... from ``close``, ``timeout`` (never answered),
    ``idle`` (no media), ``shutdown``, or the reason given to ``close_all_for``.
    """

    def __init__(self, limits=None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.limits = limits or CallLimits()
        self.clock = clock
        self.on_call_ended = None
        self._calls = {}
        self._by_account = {}
        self.key_requests = WindowLimiter(self.limits.key_requests_per_ip, self.limits.key_request_window, clock)
        self._unclaimed = OrderedDict()  # key -> UnclaimedKey, oldest first
        self._unclaimed_by_ip = {}

    def request_key(self, caller, callee, kind="call", source_ip=None, counted=False):
        """A new unclaimed key for a keyed call between the two; ``claim`` makes it a call.

        Counts against ``source_ip``'s key request rate (unless ``counted``
        already) and its share of the unclaimed pool.
        """
        if not counted and source_ip is not None \
                and self.key_requests.hit(source_ip) > self.limits.key_requests_per_ip:
            raise CallError("rate_limited")
        _check_parties(caller, callee, kind)
        self._expire_unclaimed()
        if self._unclaimed_by_ip.get(source_ip, 0) >= self.limits.unclaimed_keys_per_ip:
            raise CallError("rate_limited")
        if len(self._unclaimed) >= self.limits.unclaimed_keys_total:
            raise CallError("server_full")
        key = new_key()
        self._unclaimed[key] = UnclaimedKey(caller, callee, kind, source_ip, self.clock.seconds())
        self._unclaimed_by_ip[source_ip] = self._unclaimed_by_ip.get(source_ip, 0) + 1
        return key

    def claim(self, key, caller, callee):
        """The caller's logged-in session uses an unclaimed key: it becomes a
        KEYED call (subject to the call limits); returns the Call."""
        self._expire_unclaimed()
        pending = self._unclaimed.get(key)
        if pending is None:
            raise CallError("no_such_call")
        if (pending.caller, pending.callee) != (caller, callee):
            raise CallError("not_party")
        self._forget_unclaimed(key)
        return self.create_call(pending.caller, pending.callee, pending.kind, KEYED, key=key)

    def unclaimed_count(self):
        self._expire_unclaimed()
        return len(self._unclaimed)

    def _expire_unclaimed(self):
        deadline = self.clock.seconds() - self.limits.unclaimed_key_timeout
        while self._unclaimed:
            key, oldest = next(iter(self._unclaimed.items()))
            if oldest.created_at > deadline:
                break
            self._forget_unclaimed(key)

    def _forget_unclaimed(self, key):
        source_ip = self._unclaimed.pop(key).source_ip
        left = self._unclaimed_by_ip[source_ip] - 1
        if left:
            self._unclaimed_by_ip[source_ip] = left
        else:
            del self._unclaimed_by_ip[source_ip]

    def create_call(self, caller, callee, kind, media, key=None):
        """Create a requested call whose media is KEYED, RELAY or P2P; returns the Call."""
        _check_parties(caller, callee, kind)
        if len(self._calls) >= self.limits.max_calls_total:
            raise CallError("server_full")
        if self._busy(caller) or self._busy(callee):
            raise CallError("busy")
        key = key or new_key()
        call = Call(key, caller, callee, kind, media, self.limits.caps_for(kind), self.clock.seconds())
        self._calls[key] = call
        for account in (caller, callee):
            self._by_account.setdefault(account, set()).add(key)
        call.timer = self.clock.callLater(self.limits.request_timeout, self._end, call, "timeout")
        return call

    def accept(self, key, by_account):
        """The callee answered: media may flow from now on.  Returns the Call."""
        call = self.get(key)
        if call is None:
            raise CallError("no_such_call")
        if by_account != call.callee:
            raise CallError("not_party")
        if call.state != REQUESTED:
            raise CallError("bad_state")
        call.state = ACCEPTED
        call.last_activity = self.clock.seconds()
        call.timer.cancel()
        if call.media != P2P:  # the server sees no p2p media, so it cannot tell idle
            call.timer = self.clock.callLater(self.limits.idle_timeout, self._check_idle, call)
        return call

    def close(self, key, reason="closed", by_account=None):
        """End a call and free what it holds; returns it, or None if it had already ended.

        With ``by_account``, only one of the two parties may end it.
        """
        call = self.get(key)
        if call is None:
            return None
        if by_account is not None and not call.has_party(by_account):
            raise CallError("not_party")
        self._end(call, reason)
        return call

    def discard(self, key):
        """End a call that was never announced to anyone: like close, without on_call_ended."""
        call = self.get(key)
        if call is not None:
            self._end(call, "discarded", notify=False)

    def close_all_for(self, account, reason):
        """End every call the account is in (logout, dropped connection); returns them."""
        calls = self.calls_of(account)
        for call in calls:
            self._end(call, reason)
        return calls

    def close_all(self, reason):
        self._unclaimed.clear()
        self._unclaimed_by_ip.clear()
        for call in list(self._calls.values()):
            self._end(call, reason)

    def get(self, key):
        return self._calls.get(key)

    def calls_of(self, account):
        return [self._calls[key] for key in self._by_account.get(account, ())]

    def find_call(self, account, other):
        """The newest live call between the two accounts, either way round, or None.

        For signalling that names the parties but not the key (seed ``cell``/``voice accept``).
        """
        shared = [call for call in self.calls_of(account) if call.has_party(other)]
        return max(shared, key=lambda call: call.created_at, default=None)

    def __len__(self):
        return len(self._calls)

    def _busy(self, account):
        return len(self._by_account.get(account, ())) >= self.limits.max_calls_per_user

    def _check_idle(self, call):
        due = call.last_activity + self.limits.idle_timeout
        now = self.clock.seconds()
        if now >= due:
            self._end(call, "idle")
        else:
            call.timer = self.clock.callLater(due - now, self._check_idle, call)

    def _end(self, call, reason, notify=True):
        del self._calls[call.key]
        for account in (call.caller, call.callee):
            keys = self._by_account[account]
            keys.discard(call.key)
            if not keys:
                del self._by_account[account]
        call.state = CLOSED
        if call.timer.active():
            call.timer.cancel()
        for cleanup in call.cleanups:
            _run_safely(cleanup)
        call.cleanups.clear()
        if notify and self.on_call_ended is not None:
            _run_safely(self.on_call_ended, call, reason)


def new_key():
    """A call key: 128 random bits, 22 characters."""
    return secrets.token_urlsafe(16)


def _check_parties(caller, callee, kind):
    if kind not in KINDS or not _valid_account(caller) or not _valid_account(callee) or caller == callee:
        raise CallError("bad_request")


def _valid_account(account):
    return isinstance(account, str) and 0 < len(account) <= MAX_ACCOUNT_LENGTH and account.isprintable()


def _run_safely(function, *args):
    try:
        function(*args)
    except Exception:
        log.failure("call cleanup {function!r} failed", function=function)
