"""What the administrator reads and changes: settings, bans, accounts in
bulk, counts for ``neochatctl stats``, and the SQLite checkpoint on stop."""

import importlib

from twisted.internet import defer


def connect(dialect):
    """A plain blocking DB-API connection, for tools that run without the
    reactor (neochatctl check, restore)."""
    module = importlib.import_module(dialect.module)
    args, kwargs = dialect.pool_args()
    return module.connect(*args, **{key: value for key, value in kwargs.items() if not key.startswith("cp_")})


class AdminStore:
    def __init__(self, db):
        self.db = db

    def checkpoint(self):
        """Deferred: move SQLite's write-ahead log into the database file,
        so that the file alone is complete.  Nothing to do on MySQL."""
        if self.db.dialect.name != "sqlite":
            return defer.succeed(None)
        return self.db.run(lambda txn: txn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    # -- settings --------------------------------------------------------

    def settings(self):
        """Deferred[dict]: every stored setting."""
        return self.db.run(
            lambda txn: dict(txn.execute("SELECT name, value FROM settings").fetchall())
        )

    def set_setting(self, name, value):
        def store(txn):
            if not txn.execute("UPDATE settings SET value = ? WHERE name = ?", (value, name)).rowcount:
                if txn.execute("SELECT COUNT(*) FROM settings WHERE name = ?", (name,)).scalar() == 0:
                    txn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, value))

        return self.db.run(store)

    # -- bans ------------------------------------------------------------

    def bans(self):
        """Deferred[list of {kind, target, reason, create_time}]."""
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT kind, target, reason, create_time FROM bans ORDER BY kind, target"
            ).dicts()
        )

    def add_ban(self, kind, target, reason, now_ms):
        """Deferred[bool]: False if it was banned already (the reason is updated)."""
        def add(txn):
            if txn.execute(
                "UPDATE bans SET reason = ? WHERE kind = ? AND target = ?", (reason, kind, target)
            ).rowcount or txn.execute(
                "SELECT COUNT(*) FROM bans WHERE kind = ? AND target = ?", (kind, target)
            ).scalar():
                return False
            txn.execute(
                "INSERT INTO bans (kind, target, reason, create_time) VALUES (?, ?, ?, ?)",
                (kind, target, reason, now_ms),
            )
            return True

        return self.db.run(add)

    def remove_ban(self, kind, target):
        """Deferred[int]: rows removed (0: it was not banned)."""
        return self.db.run(
            lambda txn: txn.execute("DELETE FROM bans WHERE kind = ? AND target = ?", (kind, target)).rowcount
        )

    # -- accounts and counts ---------------------------------------------

    def set_password_hash(self, account, password_hash):
        """Deferred[int]: 1, or 0 for an unknown account."""
        return self.db.run(
            lambda txn: txn.execute(
                "UPDATE users SET password_hash = ? WHERE user_account = ?", (password_hash, account)
            ).rowcount
        )

    def users(self, search="", limit=1000):
        """Deferred[list of {user_account, user_name, registration_time}]:
        accounts or names containing ``search``, in account order."""
        pattern = _like(search)
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT user_account, user_name, registration_time FROM users"
                " WHERE user_account LIKE ? ESCAPE '|' OR user_name LIKE ? ESCAPE '|'"
                " ORDER BY user_account LIMIT ?",
                (pattern, pattern, limit),
            ).dicts()
        )

    def groups(self, search="", limit=1000):
        """Deferred[list of {group_id, founder, introduction, member_count}]."""
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT g.group_id, g.founder, g.introduction,"
                " (SELECT COUNT(*) FROM group_users u WHERE u.group_id = g.group_id) AS member_count"
                " FROM chat_groups g WHERE g.group_id LIKE ? ESCAPE '|' ORDER BY g.group_id LIMIT ?",
                (_like(search), limit),
            ).dicts()
        )

    def pending_count(self):
        """Deferred[int]: messages waiting in pending queues."""
        return self.db.run(lambda txn: int(txn.execute("SELECT COUNT(*) FROM pending").scalar() or 0))

    def counts(self, since_ms):
        """Deferred[dict]: accounts, groups, messages since ``since_ms``,
        files and their bytes, pending deliveries."""
        def count(txn):
            def scalar(sql, args=()):
                return int(txn.execute(sql, args).scalar() or 0)

            return {
                "accounts": scalar("SELECT COUNT(*) FROM users"),
                "groups": scalar("SELECT COUNT(*) FROM chat_groups"),
                "messages_today": scalar("SELECT COUNT(*) FROM messages WHERE create_time >= ?", (since_ms,)),
                "messages": scalar("SELECT COUNT(*) FROM messages"),
                "pending": scalar("SELECT COUNT(*) FROM pending"),
                "files": scalar("SELECT COUNT(*) FROM files"),
                "file_bytes": scalar("SELECT COALESCE(SUM(size), 0) FROM files"),
            }

        return self.db.run(count)


def _like(search):
    """A LIKE pattern (escape character ``|``) matching ``search`` anywhere."""
    return "%" + search.replace("|", "||").replace("%", "|%").replace("_", "|_") + "%"
