"""The store on SQLite and MariaDB: one query set, Deferreds everywhere."""

import os

import pytest
import pytest_twisted
from twisted.internet import defer

from neochat.chat.model import PRIVATE, ChatMessage, private_conversation
from neochat.store import Database, Store, dialect_from_url
from neochat.store.database import ClientIdReused, MissingReference
from neochat.store.dialect import MysqlDialect, SqliteDialect
from neochat.store.schema import upgrade


@pytest_twisted.async_yield_fixture
async def store(db_url, tmp_path):
    db = Database(dialect_from_url(db_url, tmp_path))
    await upgrade(db)
    yield Store(db)
    db.close()


async def users(store, *names):
    for name in names:
        assert await store.users.create(name, "hash-" + name, 1)


def message(author, to, content, client_id):
    return ChatMessage(author=author, chat_type=PRIVATE, content=content,
                       client_id=client_id, rece_user=to)


@pytest_twisted.ensureDeferred
async def test_account_is_unique_and_profile_editable(store):
    await users(store, "+86101")
    assert not await store.users.create("+86101", "other", 2)
    await store.users.update_profile("+86101", {"user_name": "小明", "sex": "male", "birthday": "2000-01-02"})
    profile = await store.users.profile("+86101")
    assert profile["user_name"] == "小明" and profile["sex"] == "male"
    assert "password_hash" not in profile
    assert await store.users.existing(["+86101", "nobody"]) == {"+86101"}


@pytest_twisted.ensureDeferred
async def test_history_pages_newest_first(store):
    await users(store, "a", "b")
    ids = []
    for n in range(7):
        stored = await store.messages.add(message("a" if n % 2 else "b", "b" if n % 2 else "a", f"m{n}", f"c{n}"))
        ids.append(stored.id)
    conversation = private_conversation("a", "b")
    page = await store.messages.history(conversation, before_id=2 ** 62, limit=3)
    assert [row["message"] for row in page] == ["m6", "m5", "m4"]
    page = await store.messages.history(conversation, before_id=page[-1]["id"], limit=3)
    assert [row["message"] for row in page] == ["m3", "m2", "m1"]


@pytest_twisted.ensureDeferred
async def test_pending_queue_pages_and_drains(store):
    await users(store, "a", "b")
    for n in range(5):
        await store.messages.add(message("a", "b", f"m{n}", f"c{n}"), pending_for=["b"])
    first = await store.messages.pending("b", 0, 3)
    rest = await store.messages.pending("b", first[-1]["id"], 3)
    assert [row["message"] for row in first + rest] == [f"m{n}" for n in range(5)]
    await store.messages.delivered(("b", row["id"]) for row in first)
    assert [row["message"] for row in await store.messages.pending("b")] == ["m3", "m4"]


@pytest_twisted.ensureDeferred
async def test_reads_asked_together_share_queries_of_at_most_max_keys_and_each_gets_its_own(store):
    names = [f"u{n}" for n in range(7)]
    await users(store, "a", *names)
    for n, name in enumerate(names):
        for k in range(n % 3):
            await store.messages.add(message("a", name, f"{name}:{k}", f"{name}-{k}"), pending_for=[name])
    asked = []
    for batched in (store.users._hashes, store.messages._pending):
        batched.max_keys = 3
        lookup = batched.lookup
        batched.lookup = lambda keys, lookup=lookup: asked.append(len(keys)) or lookup(keys)
    hashes = await defer.gatherResults([store.users.password_hash(name) for name in names + ["nobody", "u0"]])
    assert hashes == ["hash-" + name for name in names] + [None, "hash-u0"]
    assert asked == [3, 3, 2]  # nine asked, eight distinct
    pages = await defer.gatherResults(
        [store.messages.pending(name) for name in names] + [store.messages.pending("u2", after_id=0, limit=1)])
    assert [[row["message"] for row in page] for page in pages] == [
        [f"{name}:{k}" for k in range(n % 3)] for n, name in enumerate(names)] + [["u2:0"]]
    first = pages[2][0]["id"]
    assert [row["message"] for row in await store.messages.pending("u2", after_id=first)] == ["u2:1"]
    assert asked == [3, 3, 2, 3, 3, 2, 1]


@pytest_twisted.ensureDeferred
async def test_same_client_id_is_one_message(store):
    await users(store, "a", "b")
    first = await store.messages.add(message("a", "b", "x", "same"), pending_for=["b"])
    again = await store.messages.add(message("a", "b", "x", "same"), pending_for=["b"])
    assert (again.id, again.create_time, again.duplicate) == (first.id, first.create_time, True)
    assert not first.duplicate
    assert len(await store.messages.pending("b")) == 1


@pytest_twisted.ensureDeferred
async def test_client_id_reused_for_another_message_is_refused(store):
    await users(store, "a", "b", "c")
    await store.messages.add(message("a", "b", "x", "same"), pending_for=["b"])
    for other in (message("a", "c", "x", "same"), message("a", "b", "y", "same")):
        with pytest.raises(ClientIdReused):
            await store.messages.add(other, pending_for=[other.rece_user])
    assert [row["message"] for row in await store.messages.pending("b")] == ["x"]
    assert await store.messages.pending("c") == []


@pytest_twisted.ensureDeferred
async def test_one_group_commit_stores_many_and_fails_only_the_bad_ones(store):
    await users(store, "a", "b")
    writes = [store.messages.add(message("a", "b", f"m{n}", f"c{n}"), pending_for=["b"]) for n in range(300)]
    writes.append(store.messages.add(message("a", "ghost", "lost", "g"), pending_for=["ghost"]))
    writes.append(store.messages.add(message("a", "b", "m0", "c0"), pending_for=["b"]))  # a resend
    results = await defer.DeferredList(writes, consumeErrors=True)
    stored = [result for ok, result in results[:300]]
    assert all(ok for ok, _ in results[:300])
    assert [s.id for s in stored] == sorted(s.id for s in stored)
    assert not results[300][0] and results[300][1].check(MissingReference)
    assert results[301][1].duplicate and results[301][1].id == stored[0].id
    assert [row["message"] for row in await store.messages.pending("b")] == [f"m{n}" for n in range(300)]


@pytest_twisted.ensureDeferred
async def test_resend_between_new_messages_leaves_each_its_own_id(store):
    await users(store, "a", "b")
    old = await store.messages.add(message("a", "b", "old", "c-old"), pending_for=["b"])
    first, again, second = await defer.gatherResults([  # one group commit
        store.messages.add(message("a", "b", text, client_id), pending_for=["b"])
        for text, client_id in (("new 1", "c1"), ("old", "c-old"), ("new 2", "c2"))
    ])
    assert again.duplicate and again.id == old.id
    assert not first.duplicate and not second.duplicate
    queued = {row["id"]: row["message"] for row in await store.messages.pending("b")}
    assert queued == {old.id: "old", first.id: "new 1", second.id: "new 2"}


@pytest_twisted.ensureDeferred
async def test_a_group_commit_holds_at_most_a_mebibyte_of_text(store, monkeypatch):
    await users(store, "a", "b")
    batches = []
    transaction = store.messages.batcher._transaction
    monkeypatch.setattr(store.messages.batcher, "_transaction",
                        lambda txn, batch, deletes: batches.append(len(batch)) or transaction(txn, batch, deletes))
    big = "x" * 60_000
    writes = [store.messages.add(message("a", "b", f"{n:03d}{big}", f"c{n}"), pending_for=["b"]) for n in range(40)]
    await defer.gatherResults(writes)
    assert sum(batches) == 40 and max(batches) == 1024 * 1024 // 60_003
    assert len(await store.messages.pending("b")) == 40


@pytest_twisted.ensureDeferred
async def test_message_to_unknown_account_is_refused(store):
    await users(store, "a")
    with pytest.raises(MissingReference):
        await store.messages.add(message("a", "ghost", "x", "c"), pending_for=["ghost"])


@pytest_twisted.ensureDeferred
async def test_text_round_trips_unicode_and_percent_and_question_marks(store):
    await users(store, "a", "b")
    text = "100% sure? 😀 <file>%2B86101_1_a.png</file>"
    await store.messages.add(message("a", "b", text, "c"), pending_for=["b"])
    assert (await store.messages.pending("b"))[0]["message"] == text


@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_mysql_connection_killed_under_the_pool_is_retried(store):
    import MySQLdb

    await users(store, "a")
    thread_id = await store.db.run(lambda txn: txn.execute("SELECT CONNECTION_ID()").scalar())
    dialect = store.db.dialect
    admin = MySQLdb.connect(host=dialect.host, port=dialect.port, user=dialect.user,
                            passwd=dialect.password, db=dialect.database)
    admin.cursor().execute(f"KILL {int(thread_id)}")
    admin.close()
    assert await store.db.run(lambda txn: txn.execute("SELECT COUNT(*) FROM users").scalar()) == 1


def test_database_urls():
    from pathlib import Path

    default = dialect_from_url("", Path("/srv/data"))
    assert isinstance(default, SqliteDialect) and default.path == "/srv/data/neochat.sqlite"
    assert dialect_from_url("sqlite:///var/x.db", Path(".")).path == "/var/x.db"
    assert dialect_from_url("sqlite:rel.db", Path(".")).path == "rel.db"
    mysql = dialect_from_url("mysql://u:p%40ss@db.example:3307/chat", Path("."))
    assert isinstance(mysql, MysqlDialect)
    assert (mysql.user, mysql.password, mysql.host, mysql.port, mysql.database) == (
        "u", "p@ss", "db.example", 3307, "chat")
    assert mysql.translate("SELECT '100%' WHERE a = ?") == "SELECT '100%%' WHERE a = %s"
    for bad in ("sqlite::memory:", "mysql://u@h/", "postgres://x/y"):
        with pytest.raises(ValueError):
            dialect_from_url(bad, Path("."))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_sqlite_log_is_checkpointed_and_started_over_beside_the_writer(store, db_url):
    """The writer leaves checkpoints to the checkpointer (store/checkpoint.py),
    which keeps the database file current and the write-ahead log short."""
    store.db.checkpointer.interval = 0  # after every write, unless one runs
    await users(store, "a", "b")
    for n in range(600):  # about 8 pages of log each: 19 MiB without checkpoints
        await store.messages.add(message("a", "b", f"{n} " + "x" * 3000, f"c{n}"))
    path = db_url[len("sqlite:"):]
    assert os.path.getsize(path + "-wal") < 4 * 1024 * 1024
    assert os.path.getsize(path) > 600 * 3000
