"""What an administrator wants on record: logins, failed logins (with the
address), logouts, registrations, kicks, bans, calls, files in and out,
limits tripped and slow clients dropped, as twisted.logger events with
fields (``audit`` names the event; never a password or a message body), and
process-wide counts for the metrics endpoint (neochat/services/metrics.py).

A limit may trip at every request of a flood, so its log lines are gated
(``LogGate``); its count is not."""

import threading
import time
from collections import Counter

from twisted.logger import Logger

log = Logger()

LIMIT_LOG_INTERVAL = 60.0  # a window of seconds with at most one line per limit and address...
LIMIT_LOG_LINES = 100  # ...and this many limit lines in all

counts = Counter()  # (event, label) -> number; read by the metrics collector
_lock = threading.Lock()  # files are counted from the FTP thread too


def count(event, label="", amount=1):
    with _lock:
        counts[(event, label)] += amount


def login(account, address, dialect):
    count("login", "ok")
    log.info("login {account} from {address}", audit="login", account=account, address=address, dialect=dialect)


def login_failed(account, address, dialect, reason):
    count("login", "failed")
    log.info("failed login {account!r} from {address}: {reason}", audit="login_failed", account=account,
             address=address, dialect=dialect, reason=reason)


def logout(account, address, reason):
    log.info("logout {account} from {address} ({reason})", audit="logout", account=account, address=address,
             reason=reason)


def registered(result, account):
    """A Deferred callback: passes ``result`` on."""
    count("registration")
    log.info("registered {account}", audit="registration", account=account)
    return result


def kicked(account, reason):
    count("kick")
    log.info("kicked {account}: {reason}", audit="kick", account=account, reason=reason)


def banned(kind, target, reason, disconnected):
    count("ban", kind)
    log.info("banned {kind} {target}: {reason} ({disconnected} disconnected)", audit="ban", kind=kind,
             target=target, reason=reason, disconnected=disconnected)


def call_started(caller, callee, kind):
    count("calls", kind)
    log.info("{kind} call {caller} -> {callee} accepted", audit="call_start", caller=caller, callee=callee,
             kind=kind)


def call_ended(caller, callee, kind, reason):
    log.info("{kind} call {caller} -> {callee} ended: {reason}", audit="call_end", caller=caller, callee=callee,
             kind=kind, reason=reason)


def message(kind):
    """Not logged (one a message would drown the log): counted only."""
    count("message", kind)


def file_transfer(direction, account, name, size):
    """``direction``: "upload" (stored) or "download" (opened for reading)."""
    count("file_transfers", direction)
    count("file_bytes", direction, size)
    log.info("file {direction} {name} ({size} bytes) by {account}", audit="file_" + direction,
             direction=direction, name=name, size=size, account=account)


def limit_tripped(limit, address, account=None, **details):
    """``limit`` (a name from docs/protocol.md "Limits" and "Throttling")
    refused or held back a request of ``address`` (and ``account``)."""
    count("limit", limit)
    suppressed = limit_lines.admit((limit, address))
    if suppressed is not None:
        log.info("limit {limit} tripped by {account} from {address}", audit="limit", limit=limit,
                 address=address, account=account, suppressed=suppressed, **details)


def slow_client_dropped(account, address, limit, reason):
    """A connection that did not read what it was sent was dropped (it
    loses nothing stored: its next login replays it)."""
    count("limit", limit)
    log.info("dropped slow client {account} from {address}: {reason}", audit="slow_client_dropped",
             account=account, address=address, limit=limit, reason=reason)


class LogGate:
    """At most one line per key, and ``lines`` lines in all, per window of
    ``interval`` seconds.  ``admit`` says how many lines were held back
    since the last one let through, or None to hold this one back too."""

    def __init__(self, interval, lines, clock=time.monotonic):
        self.interval = interval
        self.lines = lines
        self.clock = clock
        self._window_start = None
        self._keys = set()  # logged in this window: at most ``lines``
        self._held_back = 0

    def admit(self, key):
        now = self.clock()
        if self._window_start is None or now - self._window_start >= self.interval:
            self._window_start = now
            self._keys.clear()
        if key in self._keys or len(self._keys) >= self.lines:
            self._held_back += 1
            return None
        self._keys.add(key)
        held_back, self._held_back = self._held_back, 0
        return held_back


limit_lines = LogGate(LIMIT_LOG_INTERVAL, LIMIT_LOG_LINES)
