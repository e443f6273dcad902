"""Throttles for logins and registrations, with bounded memory.

Failed logins are counted per account and per address: past a few failures
each further one makes the next attempt wait twice as long, and past a
threshold the account (or address) is locked out for a while.  Registrations
are counted per address in a fixed window.  Every table is an LRU of bounded
size whose entries also expire, so a flood of names or addresses costs at
most ``max_entries`` rows each.  docs/protocol.md ("Throttling") has the
defaults and the replies.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

from twisted.logger import Logger

from neochat.chat import audit
from neochat.chat.errors import ChatError
from neochat.chat.overrides import override

log = Logger()


class TooManyAttempts(ChatError):
    stat = 429

    def __init__(self, retry_after):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many attempts, retry in {self.retry_after} s")


@dataclass(frozen=True)
class FailurePolicy:
    """``free`` failures cost nothing; each one after waits 1, 2, 4 ... s
    (at most ``max_delay``); at ``lock_after`` the key is locked ``lock_seconds``."""

    free: int
    lock_after: int
    lock_seconds: float
    max_delay: float = 60.0

    def delay(self, failures):
        if self.lock_after and failures >= self.lock_after:
            return self.lock_seconds
        if failures < self.free:
            return 0.0
        return min(self.max_delay, 2.0 ** (failures - self.free))


@dataclass(frozen=True)
class ThrottleSettings:
    account: FailurePolicy = FailurePolicy(free=5, lock_after=20, lock_seconds=15 * 60)
    address: FailurePolicy = FailurePolicy(free=10, lock_after=20, lock_seconds=60 * 60)
    registrations_per_address: int = 5
    registration_window: float = 60 * 60
    max_entries: int = 10_000  # per table
    # A cluster node (neochat/cluster/throttle.py) counts alone while Redis takes longer
    # than this (seconds) or has this many commands unanswered.
    shared_timeout: float = 1.0
    shared_waiting: int = 1000

    def override(self, name, text):
        """A copy with one setting changed: ``registrations_per_address``,
        ``account.lock_after``...; 0 turns a count off (not ``max_entries``)."""
        changed = override(self, name, text, "throttle setting")
        if changed.max_entries == 0:
            raise ValueError("max_entries cannot be 0")
        return changed


class BoundedTable:
    """key -> state, least recently touched first; the oldest goes past ``size``,
    and entries idle for ``lifetime`` seconds are swept as new ones arrive."""

    def __init__(self, size, lifetime):
        self.size = size
        self.lifetime = lifetime
        self._rows = OrderedDict()  # key -> [touched, ...state]

    def get(self, key, now):
        row = self._rows.get(key)
        if row is not None and now - row[0] > self.lifetime:
            del self._rows[key]
            return None
        return row

    def put(self, key, row, now):
        self._rows[key] = row
        self._rows.move_to_end(key)
        while self._rows:
            oldest_key, oldest = next(iter(self._rows.items()))
            if len(self._rows) <= self.size and now - oldest[0] <= self.lifetime:
                break
            del self._rows[oldest_key]

    def pop(self, key):
        self._rows.pop(key, None)

    def __len__(self):
        return len(self._rows)


class FailureCounter:
    """Failures per key with the policy's growing delay and lockout."""

    def __init__(self, policy, size):
        self.policy = policy
        # A row lives until its last lockout or delay is over, then one more lockout.
        self.table = BoundedTable(size, 2 * policy.lock_seconds)

    def wait(self, key, now):
        """Seconds before ``key`` may try again (0: now)."""
        row = self.table.get(key, now)
        return 0.0 if row is None else max(0.0, row[2] - now)

    def fail(self, key, now):
        """Count a failure; returns the failure count."""
        row = self.table.get(key, now)
        failures = 1 if row is None else row[1] + 1
        self.table.put(key, [now, failures, now + self.policy.delay(failures)], now)
        return failures

    def forget(self, key):
        self.table.pop(key)


class Throttle:
    """What the Accounts consult before and after each login and registration,
    counting in this process.  The Accounts wait on what its methods return
    (None here; a Deferred from the cluster's, neochat/cluster/throttle.py)."""

    def __init__(self, clock, settings=None):
        self.clock = clock
        self.settings = settings or ThrottleSettings()
        size = self.settings.max_entries
        self.accounts = FailureCounter(self.settings.account, size)
        self.addresses = FailureCounter(self.settings.address, size)
        self.registrations = BoundedTable(size, self.settings.registration_window)

    def check_login(self, account, address):
        """Raise TooManyAttempts while the account or the address must wait."""
        now = self.clock.seconds()
        by_account, by_address = self.accounts.wait(account, now), self.addresses.wait(address, now)
        if by_account or by_address:
            limit = "failed_logins_per_account" if by_account >= by_address else "failed_logins_per_address"
            audit.limit_tripped(limit, address, account)
            raise TooManyAttempts(max(by_account, by_address))

    def login_failed(self, account, address, via):
        now = self.clock.seconds()
        by_account, by_address = self.accounts.fail(account, now), self.addresses.fail(address, now)
        self.report_failure(account, address, via, by_account, by_address)

    def report_failure(self, account, address, via, by_account, by_address):
        """Log a failed login with its counts, and a lockout it starts."""
        log.info(
            "failed login for {account} from {address} via {via}"
            " ({account_failures} for the account, {address_failures} from the address)",
            account=account, address=address, via=via,
            account_failures=by_account, address_failures=by_address,
        )
        for policy, key, count, what in ((self.settings.account, account, by_account, "account"),
                                         (self.settings.address, address, by_address, "address")):
            if count == policy.lock_after:
                log.warn("{what} {key} locked out for {seconds:.0f} s after {count} failed logins",
                         what=what, key=key, seconds=policy.lock_seconds, count=count)

    def login_succeeded(self, account):
        self.accounts.forget(account)

    def register(self, address):
        """Count one registration from ``address``; raise TooManyAttempts past the limit."""
        now = self.clock.seconds()
        row = self.registrations.get(address, now)
        if row is None:
            row = [now, 0]  # the window starts with the first registration
        if self.settings.registrations_per_address and row[1] >= self.settings.registrations_per_address:
            audit.limit_tripped("registrations_per_address", address)
            raise TooManyAttempts(row[0] + self.settings.registration_window - now)
        row[1] += 1
        self.registrations.put(address, row, now)
