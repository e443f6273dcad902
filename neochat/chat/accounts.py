"""Registration and password checks.  Hashing runs in a thread: argon2 is
slow on purpose and must never stall the reactor."""

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet import defer, threads

from neochat.chat.errors import BadRequest, ChatError, Conflict
from neochat.chat.model import now_ms

ACCOUNT_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,100}$")
MAX_PASSWORD = 1024


def check_account_name(account):
    if not isinstance(account, str) or not ACCOUNT_PATTERN.match(account):
        raise BadRequest("bad account name")
    return account


class Accounts:
    def __init__(self, users, hasher=None, reactor=None):
        self.users = users
        self.hasher = hasher or PasswordHasher()
        self._reactor = reactor

    def _in_thread(self, function, *args):
        if self._reactor is None:
            return threads.deferToThread(function, *args)
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    @defer.inlineCallbacks
    def register(self, account, password, profile=None):
        """``profile``: checked profile fields stored with the account."""
        check_account_name(account)
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            raise BadRequest("bad password")
        hashed = yield self._in_thread(self.hasher.hash, password)
        created = yield self.users.create(account, hashed, now_ms(), profile)
        if not created:
            raise Conflict("account exists")

    @defer.inlineCallbacks
    def check_password(self, account, password):
        """Deferred[bool].  Unknown accounts cost a hash too, so timing does
        not tell which accounts exist."""
        if not isinstance(account, str) or not isinstance(password, str):
            return False
        stored = yield self.users.password_hash(account)
        if stored is None:
            yield self._in_thread(self.hasher.hash, password)
            return False
        try:
            yield self._in_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return True

    @defer.inlineCallbacks
    def authenticate(self, account, password):
        """Raise unless the password is right."""
        if not (yield self.check_password(account, password)):
            raise ChatError("wrong account or password", stat=404)
