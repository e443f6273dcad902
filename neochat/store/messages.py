"""Chat records, pending (not yet delivered) messages and history pages."""

from neochat.store.database import MissingReference, NotAMember

COLUMNS = ("id", "client_id", "author", "rece_user", "group_id", "chat_type", "message", "create_time")
SELECT_COLUMNS = ", ".join(COLUMNS)
JOINED_COLUMNS = ", ".join("m." + column for column in COLUMNS)


class MessageStore:
    def __init__(self, db):
        self.db = db

    def add(self, message, pending_for=()):
        """Commit ``message`` (a ChatMessage without id) and queue it for the
        accounts in ``pending_for``.  Deferred[(id, create_time)].

        Idempotent on (author, client_id): storing the same message twice,
        as a retried transaction does, returns the first copy's id.
        """
        return self.db.run(self._add, message, tuple(pending_for))

    def add_to_group(self, message):
        """Commit a group message and queue it for every other member, in one
        transaction that also checks the author is a member.
        Deferred[(id, create_time, [members but the author])]."""
        return self.db.run(self._add_to_group, message)

    def _add_to_group(self, txn, message):
        members = [
            row[0]
            for row in txn.execute(
                "SELECT user_account FROM group_users WHERE group_id = ?", (message.group_id,)
            ).fetchall()
        ]
        if not members:
            raise MissingReference(message.group_id)  # a group always has its creator
        if message.author not in members:
            raise NotAMember(message.group_id)
        recipients = [account for account in members if account != message.author]
        message_id, create_time = self._add(txn, message, recipients)
        return message_id, create_time, recipients

    def _add(self, txn, message, pending_for):
        try:
            txn.execute(
                "INSERT INTO messages (client_id, author, rece_user, group_id, chat_type,"
                " conversation, message, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.client_id, message.author, message.rece_user, message.group_id,
                    message.chat_type, message.conversation, message.content,
                    message.create_time,
                ),
            )
            message_id = txn.lastrowid
            create_time = message.create_time
        except Exception as error:
            if self.db.dialect.is_missing_reference(error):
                raise MissingReference(str(error)) from error
            if not self.db.dialect.is_unique_violation(error):
                raise
            message_id, create_time = txn.execute(
                "SELECT id, create_time FROM messages WHERE author = ? AND client_id = ?",
                (message.author, message.client_id),
            ).fetchone()
            txn.execute("DELETE FROM pending WHERE message_id = ?", (message_id,))
        if pending_for:
            txn.executemany(
                "INSERT INTO pending (user_account, message_id) VALUES (?, ?)",
                [(account, message_id) for account in pending_for],
            )
        return message_id, create_time

    def pending(self, account, after_id=0, limit=500):
        """Deferred[list of row dicts]: undelivered messages, oldest first."""
        return self.db.run(
            lambda txn: txn.execute(
                f"SELECT {JOINED_COLUMNS}"
                " FROM pending p JOIN messages m ON m.id = p.message_id"
                " WHERE p.user_account = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
                (account, after_id, limit),
            ).dicts()
        )

    def delivered(self, rows):
        """Deferred: drop (account, message id) pairs from the pending queues."""
        rows = list(rows)
        return self.db.run(
            lambda txn: txn.executemany(
                "DELETE FROM pending WHERE user_account = ? AND message_id = ?", rows
            ).rowcount
        )

    def to_recipient(self, rece_user, chat_type, author=None, limit=50):
        """Deferred[list of row dicts]: the newest messages of ``chat_type``
        to ``rece_user`` (from ``author``, if given)."""
        where, args = "rece_user = ? AND chat_type = ?", [rece_user, chat_type]
        if author is not None:
            where, args = where + " AND author = ?", args + [author]
        return self.db.run(
            lambda txn: txn.execute(
                f"SELECT {SELECT_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
                args + [limit],
            ).dicts()
        )

    def history(self, conversation, before_id, limit):
        """Deferred[list of row dicts]: newest first, ids below ``before_id``."""
        return self.db.run(
            lambda txn: txn.execute(
                f"SELECT {SELECT_COLUMNS} FROM messages WHERE conversation = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                (conversation, before_id, limit),
            ).dicts()
        )
