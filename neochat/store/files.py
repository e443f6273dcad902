"""Uploaded files' metadata and who may read them (schema step 0002)."""

from neochat.store.batch import GroupCommit
from neochat.store.database import MissingReference

COLUMNS = "name, owner, original_name, size, sha256, create_time"
JOINED_COLUMNS = ", ".join("f." + column for column in COLUMNS.split(", "))

# A file is readable by its owner, by accounts it was granted to, and by the
# current members of groups it was granted to (``readable`` lists the same).
# Parameters: account x3.
READERS_CLAUSE = (
    "(f.owner = ?"
    " OR EXISTS (SELECT 1 FROM file_readers r"
    "  WHERE r.file_name = f.name AND r.user_account = ?)"
    " OR EXISTS (SELECT 1 FROM file_group_readers g"
    "  JOIN group_users u ON u.group_id = g.group_id"
    "  WHERE g.file_name = f.name AND u.user_account = ?))"
)


ROWS_PER_COMMIT = 64  # file rows of uploads finishing together, in one transaction


class FileStore:
    """Writes go through the writer (rows through the group commit); reads
    run beside it, so that the checks of an FTP session do not wait for
    other sessions' commits."""

    def __init__(self, db):
        self.db = db
        self._adds = GroupCommit(db, self._add_many, ROWS_PER_COMMIT)

    def add(self, row, quota=0):
        """Commit a file row (a dict with COLUMNS).  Deferred[bool]: False,
        and nothing stored, when the owner's files would then total more
        than ``quota`` bytes (0: no quota).  Rows added together share one
        transaction (group commit); each Deferred fires after its commit.

        Idempotent: a retried transaction finding its own row returns True.
        """
        return self._adds.submit((row, quota))

    def _add_many(self, txn, adds):
        return [self._add(txn, row, quota) for row, quota in adds]

    def _add(self, txn, row, quota):
        existing = txn.execute(
            "SELECT owner, size, sha256 FROM files WHERE name = ?", (row["name"],)
        ).fetchone()
        if existing is not None:
            if tuple(existing) == (row["owner"], row["size"], row["sha256"]):
                return True
            raise ValueError(f"file name {row['name']!r} is taken")
        if quota and self._used(txn, row["owner"]) + row["size"] > quota:
            return False
        try:
            txn.execute(
                f"INSERT INTO files ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                [row[column] for column in COLUMNS.split(", ")],
            )
        except Exception as error:
            if self.db.dialect.is_missing_reference(error):
                raise MissingReference(str(error)) from error
            raise
        return True

    def get(self, name):
        """Deferred[dict or None]."""
        return self.db.read(
            lambda txn: txn.execute(f"SELECT {COLUMNS} FROM files WHERE name = ?", (name,)).dict()
        )

    def grant(self, grantor, names, accounts=(), group_id=None):
        """Let ``accounts`` and the members of ``group_id`` read those of
        ``names`` that ``grantor`` may read.  Deferred[list of names granted]."""
        return self.db.run(self._grant, grantor, list(names), list(accounts), group_id)

    def _grant(self, txn, grantor, names, accounts, group_id):
        granted = [name for name in names if self._may_read(txn, grantor, name)]
        rows = [("file_readers", "user_account", name, account)
                for name in granted for account in accounts]
        if group_id is not None:
            rows += [("file_group_readers", "group_id", name, group_id) for name in granted]
        for table, column, name, reader in rows:
            try:
                txn.execute(f"INSERT INTO {table} (file_name, {column}) VALUES (?, ?)", (name, reader))
            except Exception as error:
                if self.db.dialect.is_missing_reference(error):
                    raise MissingReference(str(error)) from error
                if not self.db.dialect.is_unique_violation(error):
                    raise
        return granted

    def may_read(self, account, name):
        """Deferred[bool]."""
        return self.db.read(self._may_read, account, name)

    @staticmethod
    def _may_read(txn, account, name):
        return txn.execute(
            f"SELECT 1 FROM files f WHERE f.name = ? AND {READERS_CLAUSE}",
            (name, account, account, account),
        ).fetchone() is not None

    def readable(self, account):
        """Deferred[list of row dicts]: every file ``account`` may read, by name."""
        return self.db.read(
            lambda txn: txn.execute(
                f"SELECT {COLUMNS} FROM files WHERE owner = ?"
                f" UNION SELECT {JOINED_COLUMNS} FROM file_readers r"
                "  JOIN files f ON f.name = r.file_name WHERE r.user_account = ?"
                f" UNION SELECT {JOINED_COLUMNS} FROM group_users u"
                "  JOIN file_group_readers g ON g.group_id = u.group_id"
                "  JOIN files f ON f.name = g.file_name WHERE u.user_account = ?"
                " ORDER BY name",
                (account, account, account),
            ).dicts()
        )

    def owned(self, account):
        """Deferred[list of row dicts]: the files ``account`` uploaded."""
        return self.db.read(
            lambda txn: txn.execute(
                f"SELECT {COLUMNS} FROM files WHERE owner = ? ORDER BY name", (account,)
            ).dicts()
        )

    def used_bytes(self, account):
        """Deferred[int]: the total size of the files ``account`` owns."""
        return self.db.read(self._used, account)

    @staticmethod
    def _used(txn, account):
        return int(txn.execute("SELECT SUM(size) FROM files WHERE owner = ?", (account,)).scalar() or 0)

    def expired(self, before_ms, limit=500):
        """Deferred[list of names] created before ``before_ms``, oldest first."""
        return self.db.read(
            lambda txn: [
                row[0] for row in txn.execute(
                    "SELECT name FROM files WHERE create_time < ? ORDER BY create_time LIMIT ?",
                    (before_ms, limit),
                ).fetchall()
            ]
        )

    def delete(self, names):
        """Deferred[int]: drop these rows (and, by cascade, their grants)."""
        rows = [(name,) for name in names]
        return self.db.run(
            lambda txn: txn.executemany("DELETE FROM files WHERE name = ?", rows).rowcount
        )
