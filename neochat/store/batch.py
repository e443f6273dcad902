"""Group commit: one writer for chat messages, many waiters.

Messages (with their pending-queue rows) and pending-queue deletes that
arrive while a transaction is running, or within one reactor turn, are
written together in ONE transaction, as Synapse's event persistence queue
does: multi-row INSERTs over the network (MySQL), one prepared statement run
per row in process (SQLite).  Each caller hears of its message only after
that commit, so nothing is acknowledged or delivered before it is durable:
through a plain callback (``queue``, the send path: no Deferred per
message) or a Deferred (``add``).

A batch is retried whole on MySQL's transient errors (store/database.py):
rows are keyed on (author, client_id), so a retried batch finds what an
earlier attempt committed and stores nothing twice.  One request's failure
(unknown recipient, not a member, client_id reused) fails that request only.
"""

from collections import deque
from functools import partial
from typing import NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

from neochat.store.database import ClientIdReused, MissingReference, NotAMember, marks
from neochat.store.drain import Drain

log = Logger()

MAX_BATCH = 256  # messages per transaction
# Characters of message text per transaction: the database driver keeps, per
# pool connection, a buffer as large as the largest statement it sent.
MAX_BATCH_TEXT = 1024 * 1024
ROWS_PER_INSERT = 200  # rows per multi-row INSERT statement
GROUP = object()  # pending_for of a group message: every member but the author
# Seconds pending-queue deletes wait for a message transaction to ride with
# before they get one of their own (at 2,000 msgs/s, one transaction per
# message instead of two).
DELETE_DELAY = 0.05

MESSAGE_COLUMNS = ("client_id", "author", "rece_user", "group_id", "chat_type", "conversation",
                   "message", "create_time")


class Stored(NamedTuple):
    """What a stored message's caller learns after the commit."""

    id: int
    create_time: int
    recipients: tuple  # accounts it was queued for
    duplicate: bool  # a resend of a message stored before: not to be delivered again


class _Write:
    __slots__ = ("message", "pending_for", "on_stored", "inserted_before", "result")

    def __init__(self, message, pending_for, on_stored):
        self.message = message
        self.pending_for = pending_for
        self.on_stored = on_stored
        self.inserted_before = False  # an earlier attempt of this batch inserted it
        self.result = None  # Stored or an exception, set in the transaction


class MessageBatcher:
    def __init__(self, db, reactor, max_batch=MAX_BATCH):
        self.db = db
        self.max_batch = max_batch
        self.reactor = reactor
        self._writes = deque()
        self._deletes = []
        self._waiters = []  # for the deletes and ``settled`` of the next batch
        self._deletes_due = False  # the waiters' deletes go in the next transaction, messages or not
        self._delete_call = None  # makes them due after DELETE_DELAY
        self._drain = Drain(reactor, lambda: bool(self._writes) or self._deletes_due, self._commit_next)

    def add(self, message, pending_for=()):
        """Deferred[Stored]; ``pending_for`` is a sequence of accounts or GROUP."""
        stored = defer.Deferred()
        self.queue(message, pending_for, partial(_settle, stored))
        return stored

    def queue(self, message, pending_for, on_stored):
        """``add`` without a Deferred: after the commit, ``on_stored(result)``
        gets the Stored, or the exception that refused this message."""
        self._writes.append(_Write(message, pending_for if pending_for is GROUP else tuple(pending_for), on_stored))
        self._drain.wake()

    def delivered(self, rows):
        """Deferred: drop (account, message id) pairs from the pending
        queues, with the next messages stored or within DELETE_DELAY."""
        self._deletes.extend(rows)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        if self._delete_call is None and not self._deletes_due:
            self._delete_call = self.reactor.callLater(DELETE_DELAY, self._due)
        return waiter

    def settled(self):
        """Deferred: fires once everything queued before the call is
        committed (a login's replay reads the queue as its last ack left it)."""
        if self._drain.idle and not self._waiters:
            return defer.succeed(None)
        waiter = self.delivered(())
        self._due()
        return waiter

    def _due(self):
        self._cancel_delete_call()
        self._deletes_due = True
        self._drain.wake()

    def _cancel_delete_call(self):
        if self._delete_call is not None:
            if self._delete_call.active():
                self._delete_call.cancel()
            self._delete_call = None

    def _commit_next(self):
        batch = self._next_batch()
        deletes, self._deletes = self._deletes, []
        waiters, self._waiters = self._waiters, []
        self._cancel_delete_call()
        self._deletes_due = False
        return self._commit(batch, deletes, waiters)

    def _next_batch(self):
        """The oldest writes, up to ``max_batch`` of them and MAX_BATCH_TEXT
        characters of text (at least one write)."""
        batch, text = [], 0
        while self._writes and len(batch) < self.max_batch:
            text += len(self._writes[0].message.content)
            if batch and text > MAX_BATCH_TEXT:
                break
            batch.append(self._writes.popleft())
        return batch

    @defer.inlineCallbacks
    def _commit(self, batch, deletes, waiters):
        try:
            yield self.db.run(self._transaction, batch, deletes)
        except Exception as error:
            if len(batch) > 1:
                # A row the checks could not foresee (an account deleted
                # meanwhile): store each message on its own.
                log.warn("batch of {n} failed ({error!r}); storing one by one", n=len(batch), error=error)
                for write in batch:
                    yield self._commit([write], [], [])
            else:
                for write in batch:
                    write.result = error
            for waiter in waiters:
                waiter.errback(error)
        else:
            for waiter in waiters:
                waiter.callback(None)
        for write in batch:
            if write.result is None:
                continue
            result, write.result = write.result, None
            try:
                write.on_stored(result)
            except Exception:
                log.failure("after storing {message!r}", message=write.message)

    # -- in the pool thread ---------------------------------------------------

    def _transaction(self, txn, batch, deletes):
        members = self._members(txn, [w.message.group_id for w in batch if w.pending_for is GROUP])
        accounts = self._accounts(txn, [w.message.rece_user for w in batch if w.message.rece_user])
        fresh, claimed = [], {}
        for write in batch:
            write.result = None
            message = write.message
            key = (message.author, message.client_id)
            if key in claimed:  # the same client id twice in this batch
                write.result = _duplicate_of(claimed[key], message)
            elif message.rece_user is not None and message.rece_user not in accounts:
                write.result = MissingReference(message.rece_user)
            elif write.pending_for is GROUP and not members.get(message.group_id):
                write.result = MissingReference(message.group_id)  # a group always has its creator
            elif write.pending_for is GROUP and message.author not in members[message.group_id]:
                write.result = NotAMember(message.group_id)
            else:
                claimed[key] = write
                fresh.append(write)
        ids = self._insert_messages(txn, fresh)
        stored_before = self._existing(txn, [key for key in claimed if key not in ids])
        pending = []
        for write in fresh:
            message = write.message
            key = (message.author, message.client_id)
            if key not in ids:
                row = stored_before.get(key)
                # No row: its recipient went away since the check above.
                write.result = MissingReference(key) if row is None else _resend_result(row, message, write)
                continue
            recipients = write.pending_for
            if recipients is GROUP:
                recipients = tuple(a for a in members[message.group_id] if a != message.author)
            pending.extend((account, ids[key]) for account in recipients)
            write.inserted_before = True
            write.result = Stored(ids[key], message.create_time, recipients, False)
        self._insert_pending(txn, pending)
        for write in batch:  # later writes of a client id claimed in this batch
            if isinstance(write.result, _Pending):
                write.result = write.result.resolve()
        self._delete(txn, deletes)

    def _existing(self, txn, keys):
        """Messages stored before under these (author, client_id) keys
        (resends: rare), with the accounts each is still queued for."""
        found = {}
        for author, client_id in keys:
            row = txn.execute(
                "SELECT id, rece_user, group_id, chat_type, message, create_time"
                " FROM messages WHERE author = ? AND client_id = ?", (author, client_id),
            ).dict()
            if row is not None:
                row["pending"] = tuple(sorted(account for account, in txn.execute(
                    "SELECT user_account FROM pending WHERE message_id = ?", (row["id"],)).fetchall()))
                found[author, client_id] = row
        return found

    def _members(self, txn, group_ids):
        group_ids = sorted(set(group_ids))
        members = {}
        if group_ids:
            for group_id, account in txn.execute(
                f"SELECT group_id, user_account FROM group_users WHERE group_id IN ({marks(group_ids)})",
                group_ids,
            ).fetchall():
                members.setdefault(group_id, []).append(account)
        return members

    def _accounts(self, txn, names):
        names = sorted(set(names))
        if not names:
            return set()
        return {row[0] for row in txn.execute(
            f"SELECT user_account FROM users WHERE user_account IN ({marks(names)})", names
        ).fetchall()}

    def _insert_messages(self, txn, writes):
        """Insert the messages, skipping keys stored before (and, on MySQL,
        rows whose reference vanished since the checks);
        {(author, client_id): id} of the rows inserted."""
        dialect = self.db.dialect
        insert = f"{dialect.insert_ignore} INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES "
        rows = [(m.client_id, m.author, m.rece_user, m.group_id, m.chat_type, m.conversation, m.content,
                 m.create_time) for m in (write.message for write in writes)]
        if not rows:
            return {}
        if dialect.in_process:
            # One writer (SqliteDialect): the rows above the largest id
            # before the insert are the ones it inserted.
            before = txn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").scalar()
            txn.executemany(_one_row(insert, rows) + dialect.on_conflict_ignore, rows)
            found = txn.execute("SELECT id, author, client_id FROM messages WHERE id > ?", (before,)).fetchall()
        else:
            found = []
            for chunk in _chunks(rows, ROWS_PER_INSERT):
                found += txn.execute(*_many_rows(insert, chunk, " RETURNING id, author, client_id")).fetchall()
        return {(author, client_id): message_id for message_id, author, client_id in found}

    def _insert_pending(self, txn, rows):
        if not rows:
            return
        insert = "INSERT INTO pending (user_account, message_id) VALUES "
        if self.db.dialect.in_process:
            txn.executemany(_one_row(insert, rows), rows)
        else:
            for chunk in _chunks(rows, ROWS_PER_INSERT):
                txn.execute(*_many_rows(insert, chunk))

    def _delete(self, txn, rows):
        if self.db.dialect.in_process:
            txn.executemany("DELETE FROM pending WHERE user_account = ? AND message_id = ?", rows)
            return
        by_account = {}
        for account, message_id in rows:
            by_account.setdefault(account, set()).add(message_id)
        for account, ids in by_account.items():
            for chunk in _chunks(sorted(ids), ROWS_PER_INSERT):
                txn.execute(f"DELETE FROM pending WHERE user_account = ? AND message_id IN ({marks(chunk)})",
                            [account, *chunk])


class GroupCommit:
    """Group commit for independent rows: what is submitted while a
    transaction runs (or within one reactor turn) goes into the next one,
    up to ``max_batch`` items.  ``transaction(txn, items)`` returns one
    result per item; each submitter's Deferred fires with its result only
    after the commit.  If a batch fails, its items are retried one by one so
    that only the culprit fails."""

    def __init__(self, db, transaction, max_batch=MAX_BATCH):
        self.db = db
        self.transaction = transaction
        self.max_batch = max_batch
        self._queue = deque()
        self._drain = Drain(db.reactor, lambda: bool(self._queue), self._commit_next)

    def submit(self, item):
        """Deferred[the transaction's result for ``item``]."""
        deferred = defer.Deferred()
        self._queue.append((item, deferred))
        self._drain.wake()
        return deferred

    def _commit_next(self):
        return self._commit([self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))])

    @defer.inlineCallbacks
    def _commit(self, batch):
        items = [item for item, _ in batch]
        try:
            results = yield self.db.run(self.transaction, items)
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].errback(error)
                return
            log.warn("batch of {n} failed ({error!r}); committing one by one", n=len(batch), error=error)
            for one in batch:
                yield self._commit([one])
            return
        for (_, deferred), result in zip(batch, results):
            deferred.callback(result)


class _Pending:
    """A later write of a client id first claimed earlier in the same batch:
    resolved once the first one has its id."""

    def __init__(self, first):
        self.first = first

    def resolve(self):
        stored = self.first.result
        if isinstance(stored, Exception):
            return stored
        return Stored(stored.id, stored.create_time, stored.recipients, True)


def _settle(deferred, result):
    if isinstance(result, Exception):
        deferred.errback(result)
    else:
        deferred.callback(result)


def _duplicate_of(first, message):
    m = first.message
    if not _same(m, message.rece_user, message.group_id, message.chat_type, message.content):
        return ClientIdReused(message.client_id)
    return _Pending(first)


def _resend_result(row, message, write):
    """A row already stored under this (author, client_id)."""
    if not _same(message, row["rece_user"], row["group_id"], row["chat_type"], row["message"]):
        return ClientIdReused(message.client_id)
    # Inserted by an earlier attempt of this very batch (its commit got lost
    # on the way back): still a new message, to deliver.
    return Stored(row["id"], row["create_time"], row["pending"], not write.inserted_before)


def _same(message, rece_user, group_id, chat_type, content):
    return (message.rece_user, message.group_id, message.chat_type, message.content) == (
        rece_user, group_id, chat_type, content)


def _one_row(insert, rows):
    """``insert`` ("INSERT ... VALUES ") for one row like those of ``rows``,
    to run once per row (executemany): in process, rows are cheap one by one."""
    return insert + "(" + marks(rows[0]) + ")"


def _many_rows(insert, rows, tail=""):
    """One statement inserting all ``rows``: (sql, values)."""
    row = "(" + marks(rows[0]) + ")"
    return insert + ", ".join([row] * len(rows)) + tail, [value for row in rows for value in row]


def _chunks(items, size):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]
