"""Chat records, pending (not yet delivered) messages and history pages."""

from neochat.store.batch import GROUP, MessageBatcher
from neochat.store.reads import BatchedRead

COLUMNS = ("id", "client_id", "author", "rece_user", "group_id", "chat_type", "message", "create_time")
SELECT_COLUMNS = ", ".join(COLUMNS)
JOINED_COLUMNS = ", ".join("m." + column for column in COLUMNS)


class MessageStore:
    def __init__(self, db):
        self.db = db
        self.batcher = MessageBatcher(db, db.reactor)
        self._pending = BatchedRead(db.reactor, self._pending_pages, missing=[])

    def add(self, message, pending_for=()):
        """Commit ``message`` (a ChatMessage without id) and queue it for the
        accounts in ``pending_for``, in the next group commit.
        Deferred[Stored]; MissingReference for an unknown recipient.

        Idempotent on (author, client_id): the same message stored again
        (a resend, or a retried transaction) is the first copy, marked
        ``duplicate``; another message under a used client id is
        ClientIdReused.
        """
        return self.batcher.add(message, pending_for)

    def add_to_group(self, message):
        """Commit a group message and queue it for every other member,
        checking in the same transaction that the author is a member.
        Deferred[Stored]; MissingReference, NotAMember."""
        return self.batcher.add(message, GROUP)

    def queue(self, message, on_stored, pending_for=(), group=False):
        """``add`` (with ``group``, ``add_to_group``) without a Deferred, for
        the send path: after the commit, ``on_stored(result)`` gets the
        Stored, or the exception that refused the message."""
        self.batcher.queue(message, GROUP if group else pending_for, on_stored)

    def settled(self):
        """Deferred: every write queued so far is committed."""
        return self.batcher.settled()

    def pending(self, account, after_id=0, limit=500):
        """Deferred[list of row dicts]: undelivered messages, oldest first.
        Pages asked for together (a login storm) are read in one query."""
        return self._pending.get((account, after_id, limit))

    def _pending_pages(self, pages):
        """{(account, after_id, limit): rows} for each page, in one statement:
        each page is its own index range, so one arm of a UNION ALL."""
        def select(txn):
            arms = " UNION ALL ".join(
                f"SELECT * FROM (SELECT {number} AS page, {JOINED_COLUMNS}"
                " FROM pending p JOIN messages m ON m.id = p.message_id"
                f" WHERE p.user_account = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?) AS page{number}"
                for number in range(len(pages))
            )
            rows = {page: [] for page in pages}
            for row in sorted(txn.execute(arms, [value for page in pages for value in page]).dicts(),
                              key=lambda row: row["id"]):
                rows[pages[row.pop("page")]].append(row)
            return rows

        return self.db.read(select)

    def delivered(self, rows):
        """Deferred: drop (account, message id) pairs from the pending
        queues, in the next group commit."""
        return self.batcher.delivered(rows)

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
        return self.db.read(
            lambda txn: txn.execute(
                f"SELECT {SELECT_COLUMNS} FROM messages WHERE conversation = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                (conversation, before_id, limit),
            ).dicts()
        )
