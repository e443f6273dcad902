"""Registration, password checks and resume tokens, behind the throttle.

Hashes run in the bounded HashPool: argon2 is slow on purpose and must never
stall the reactor.  Every login, by password or by token and from chat or
FTP, goes through ``authenticate``, which the Throttle guards.
"""

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet import defer

from neochat.chat.admission import Admission
from neochat.chat.errors import BadRequest, ChatError, Conflict
from neochat.chat.hashing import HashPool
from neochat.chat.model import now_ms
from neochat.chat.throttle import Throttle

ACCOUNT_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,100}$")
MAX_PASSWORD = 1024


def check_account_name(account):
    if not isinstance(account, str) or not ACCOUNT_PATTERN.match(account):
        raise BadRequest("bad account name")
    return account


def wrong_credentials():
    return ChatError("wrong account or password", stat=404)


class Accounts:
    """``tokens`` (a ResumeTokens) makes logins answer with a token and
    accept one; ``throttle`` defaults to one on ``reactor``."""

    def __init__(self, users, hasher=None, reactor=None, *, pool=None, throttle=None, tokens=None):
        if reactor is None:
            from twisted.internet import reactor
        self.users = users
        self.hasher = hasher or PasswordHasher()
        self.pool = pool or HashPool(reactor)
        self.throttle = throttle or Throttle(reactor)
        self.tokens = tokens
        self.admission = Admission()  # bans and open registration (neochatctl)

    @defer.inlineCallbacks
    def register(self, account, password, profile=None, address=None):
        """``profile``: checked profile fields stored with the account;
        ``address``: where the registration came from, for the throttle."""
        check_account_name(account)
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            raise BadRequest("bad password")
        if address is not None:
            yield self.throttle.register(address)
        hashed = yield self.pool.run(self.hasher.hash, password)
        created = yield self.users.create(account, hashed, now_ms(), profile)
        if not created:
            raise Conflict("account exists")

    @defer.inlineCallbacks
    def check_password(self, account, password):
        """Deferred[str or None]: the stored hash (upgraded to the current
        parameters if they changed) when the password is right.  Unknown
        accounts cost a hash too, so timing does not tell which exist."""
        if not isinstance(account, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        stored = yield self.users.password_hash(account)
        if stored is None:
            yield self.pool.run(self.hasher.hash, password)
            return None
        try:
            yield self.pool.run(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(stored):
            rehashed = yield self.pool.run(self.hasher.hash, password)
            if (yield self.users.replace_password_hash(account, stored, rehashed)):
                stored = rehashed
        return stored

    @defer.inlineCallbacks
    def authenticate(self, account, password=None, address=None, token=None, via="chat"):
        """Raise unless the password (or the resume token) is right; throttled
        per account and per ``address``.  Returns a fresh resume token, or
        None without ``tokens``."""
        yield self.throttle.check_login(account, address)
        if token is not None and self.tokens is not None:
            stored = yield self.users.password_hash(account)
            if not self.tokens.valid(token, account, stored):
                stored = None
        elif password is not None:
            stored = yield self.check_password(account, password)
        else:
            raise BadRequest("missing field: password")
        if stored is None:
            yield self.throttle.login_failed(account, address, via)
            raise wrong_credentials()
        self.admission.check_account(account)  # a banned account is refused loudly
        yield self.throttle.login_succeeded(account)
        return None if self.tokens is None else self.tokens.issue(account, stored)
