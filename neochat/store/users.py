"""Accounts and profiles (seed 002's user table)."""

from neochat.store.database import marks
from neochat.store.reads import BatchedRead

PROFILE_FIELDS = ("user_name", "user_phone", "sex", "birthday", "address")


class UserStore:
    def __init__(self, db):
        self.db = db
        self._hashes = BatchedRead(db.reactor, self._password_hashes)

    def create(self, account, password_hash, now_ms, profile=None):
        """Deferred[bool]: False when the account is taken.  ``profile`` sets
        PROFILE_FIELDS from the start."""
        return self.db.run(self._create, account, password_hash, now_ms, profile or {})

    def _create(self, txn, account, password_hash, now_ms, profile):
        names = [name for name in PROFILE_FIELDS if name in profile]
        columns = ", ".join(["user_account", "password_hash", "registration_time"] + names)
        values = [account, password_hash, now_ms] + [profile[name] for name in names]
        try:
            txn.execute(f"INSERT INTO users ({columns}) VALUES ({marks(values)})", values)
            return True
        except Exception as error:
            if not self.db.dialect.is_unique_violation(error):
                raise
        # A retried transaction that had in fact committed finds its own salted
        # hash there: that is still our registration.
        stored = txn.execute(
            "SELECT password_hash FROM users WHERE user_account = ?", (account,)
        ).scalar()
        return stored == password_hash

    def password_hash(self, account):
        """Deferred[str or None].  Logins that come together (a reconnect
        storm) read their hashes in one query."""
        return self._hashes.get(account)

    def _password_hashes(self, accounts):
        return self.db.read(
            lambda txn: dict(txn.execute(
                f"SELECT user_account, password_hash FROM users WHERE user_account IN ({marks(accounts)})",
                accounts,
            ).fetchall())
        )

    def replace_password_hash(self, account, old, new):
        """Deferred[bool]: set ``new`` if the stored hash is still ``old``."""
        return self.db.run(
            lambda txn: txn.execute(
                "UPDATE users SET password_hash = ? WHERE user_account = ? AND password_hash = ?",
                (new, account, old),
            ).rowcount == 1
        )

    def existing(self, accounts):
        """Deferred[set]: those of ``accounts`` that are registered."""
        accounts = list(accounts)

        def select(txn):
            txn.execute(f"SELECT user_account FROM users WHERE user_account IN ({marks(accounts)})", accounts)
            return {row[0] for row in txn.fetchall()}

        return self.db.run(select)

    def profile(self, account):
        """Deferred[dict or None]: the public profile, never the hash."""
        columns = ", ".join(("user_account",) + PROFILE_FIELDS + ("registration_time",))
        return self.db.run(
            lambda txn: txn.execute(
                f"SELECT {columns} FROM users WHERE user_account = ?", (account,)
            ).dict()
        )

    def delete(self, account):
        """Deferred: the account and, by cascade, its friendships, memberships,
        the groups it created, its messages and its file rows."""
        return self.db.run(
            lambda txn: txn.execute("DELETE FROM users WHERE user_account = ?", (account,)).rowcount
        )

    def update_profile(self, account, changes):
        """Deferred: set the given PROFILE_FIELDS."""
        names = [name for name in PROFILE_FIELDS if name in changes]
        if not names:
            return self.db.run(lambda txn: None)
        assignments = ", ".join(f"{name} = ?" for name in names)
        values = [changes[name] for name in names] + [account]
        return self.db.run(
            lambda txn: txn.execute(
                f"UPDATE users SET {assignments} WHERE user_account = ?", values
            ).rowcount
        )
