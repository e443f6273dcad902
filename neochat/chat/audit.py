"""What an administrator wants on record: logins, failed logins (with the
address), logouts, registrations, kicks, bans, calls, files in and out, as
twisted.logger events with fields (``audit`` names the event; never a
password or a message body), and process-wide counts for the metrics
endpoint (neochat/services/metrics.py)."""

import threading
from collections import Counter

from twisted.logger import Logger

log = Logger()

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
