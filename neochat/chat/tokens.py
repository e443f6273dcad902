"""Resume tokens: log in again without the password, and without argon2.

A token is ``v1.<account>.<expiry>.<mac>`` (account in unpadded base64url,
expiry in epoch seconds), the MAC an HMAC-SHA256 under a server secret over
the account, the expiry and the account's stored password hash.  So a token
stops working when it expires, when the password (its stored hash) changes
and when the account is deleted, and the server keeps no table of tokens.
"""

import base64
import hashlib
import hmac
import os
import secrets

SECRET_BYTES = 32
DEFAULT_LIFETIME = 7 * 24 * 3600
MAX_TOKEN = 512


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(path):
    """The secret in ``path``, made (readable by the owner only) the first time."""
    try:
        with open(path, "rb") as existing:
            secret = existing.read()
        if len(secret) >= SECRET_BYTES:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as new:
        new.write(secret)
    return secret


class ResumeTokens:
    def __init__(self, secret, clock, lifetime=DEFAULT_LIFETIME):
        self.secret = secret
        self.clock = clock
        self.lifetime = lifetime

    def _mac(self, account, expiry, password_hash):
        message = b"\0".join((account.encode("utf-8"), str(expiry).encode(), password_hash.encode("utf-8")))
        return _b64(hmac.new(self.secret, message, hashlib.sha256).digest())

    def issue(self, account, password_hash):
        expiry = int(self.clock.seconds() + self.lifetime)
        return f"v1.{_b64(account.encode('utf-8'))}.{expiry}.{self._mac(account, expiry, password_hash)}"

    def valid(self, token, account, password_hash):
        """Whether ``token`` is a live token of ``account`` with this hash."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or password_hash is None:
            return False
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
            return False
        try:
            named = _unb64(parts[1]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        expiry = int(parts[2])
        return (
            named == account
            and expiry > self.clock.seconds()
            and hmac.compare_digest(parts[3], self._mac(account, expiry, password_hash))
        )
