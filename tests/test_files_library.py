"""The file library: naming, sanitising, references, and reactor-side
(in-band) uploads on SQLite and MariaDB."""

import hashlib
import os
import re

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from neochat.chat import files
from neochat.chat.files import (
    FileLibrary,
    FileLimits,
    FileTooLarge,
    QuotaExceeded,
    is_stored_name,
    references,
    sanitise,
    stored_name,
)
from neochat.store import Database, dialect_from_url
from neochat.store.database import MissingReference
from neochat.store.files import FileStore
from neochat.store.schema import upgrade
from neochat.store.users import UserStore


@pytest.mark.parametrize("original, expected", [
    ("a.png", "a.png"),
    ("../x", "x"),
    ("/etc/passwd", "passwd"),
    ("dir/sub/b.png", "b.png"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("", "file"),
    (None, "file"),
    (".", "file"),
    ("..", "file"),
    (" .hidden ", "hidden"),
    ("tab\there\x00\x7f.txt", "tabhere.txt"),
    ("\u202egnp.exe", "gnp.exe"),
    ("x<y>.png", "x_y_.png"),
    ("x<file>y</file>.png", "file_.png"),
    ('a:b*c?"d|e.txt', "a_b_c__d_e.txt"),
    ("照片.jpg", "照片.jpg"),
])
def test_sanitise_keeps_only_a_safe_last_component(original, expected):
    assert sanitise(original) == expected


def test_long_names_are_cut_but_keep_their_extension():
    assert sanitise("a" * 300 + ".png") == "a" * 96 + ".png"
    cut = sanitise("照" * 300 + ".jpeg")
    assert cut.endswith(".jpeg") and len(cut.encode()) <= files.MAX_ORIGINAL_BYTES
    assert sanitise("x." + "y" * 40) == ("x." + "y" * 40)  # too long to be an extension


def test_stored_name_follows_the_seed_rule():
    assert stored_name("+86101", 10012312312311, "a.png") == "%2B86101_10012312312311_a.png"
    assert stored_name("a/b c", 1, "../../x.txt") == "a%2Fb%20c_1_x.txt"


def test_stored_names_always_fit_one_path_component():
    for account in ("+86101", "用户" * 50, "%" * 100):
        name = stored_name(account, 10 ** 13, "名" * 300 + ".png")
        assert len(name.encode()) <= files.MAX_NAME_BYTES
        assert is_stored_name(name) and name.endswith(".png")
    assert stored_name("用户" * 50, 1, "a") != stored_name("用户" * 49 + "x", 1, "a")


@pytest.mark.parametrize("name", [
    "", ".", "..", ".partial", "../a_1_b", "a/b_1_c", "a_b", "a_1_\nb", "a_1_\ud800", "x" * 300 + "_1_a",
])
def test_is_stored_name_rejects_what_no_upload_can_be_named(name):
    assert not is_stored_name(name)


def test_references_lists_each_stored_name_once_in_order():
    text = ("你好 <file>%2B86101_10012312312311_a.png</file> <file> b_2_c.txt </file>"
            "<file>../../etc/passwd</file><file>%2B86101_10012312312311_a.png</file><file></file>")
    assert references(text) == ["%2B86101_10012312312311_a.png", "b_2_c.txt"]
    assert references("no files") == [] and references(None) == []


# -- reactor-side uploads ---------------------------------------------------

@pytest_twisted.async_yield_fixture
async def library(db_url, tmp_path):
    db = Database(dialect_from_url(db_url, tmp_path), reactor)
    await upgrade(db)
    for account in ("+86101", "bob"):
        assert await UserStore(db).create(account, "hash", 1)
    limits = FileLimits(max_file_size=1000, user_quota=2500)
    made = FileLibrary(FileStore(db), tmp_path / "files", limits, reactor)
    yield made
    db.close()


def on_disk(library):
    """(visible files, partial files)."""
    visible = sorted(set(os.listdir(library.directory)) - {files.PARTIAL_DIR})
    return visible, os.listdir(library.partial_directory)


@pytest_twisted.ensureDeferred
async def test_upload_streams_then_appears_with_its_hash(library):
    upload = await library.begin_upload("+86101", "a.png")
    assert re.fullmatch(r"%2B86101_\d{13}_a\.png", upload.name)
    upload.write(b"x" * 600)
    assert on_disk(library)[0] == []  # nothing visible yet
    upload.write(b"y" * 400)
    info = await upload.finish()
    assert (info.name, info.size) == (upload.name, 1000)
    assert info.sha256 == hashlib.sha256(b"x" * 600 + b"y" * 400).hexdigest()
    assert on_disk(library) == ([info.name], [])
    with library.open_for_reading(info.name) as stored:
        assert stored.read() == b"x" * 600 + b"y" * 400
    assert await library.may_read("+86101", info.name)
    assert not await library.may_read("bob", info.name)


@pytest_twisted.ensureDeferred
async def test_a_large_upload_is_hashed_while_it_streams(library):
    library.limits = FileLimits(max_file_size=0, user_quota=0)
    upload = await library.begin_upload("+86101", "big.bin")
    expected = hashlib.sha256()
    buffer = bytearray(64 * 1024)  # reused for every chunk, as a socket reader may do
    for number in range(3 * files.INLINE_HASH_BYTES // len(buffer)):
        buffer[:] = bytes([number % 251]) * len(buffer)
        expected.update(buffer)
        upload.write(buffer)
    info = await upload.finish()
    with library.open_for_reading(info.name) as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == info.sha256 == expected.hexdigest()
    assert (await library.store.get(info.name))["sha256"] == info.sha256


@pytest_twisted.ensureDeferred
async def test_rows_added_together_share_a_transaction_and_a_bad_row_fails_alone(library, monkeypatch):
    transactions = []
    run = library.store.db.run
    monkeypatch.setattr(library.store.db, "run", lambda f, *args: transactions.append(f.__name__) or run(f, *args))
    rows = [dict(name=f"{owner}_1_{number}", owner=owner, original_name="a", size=1000, sha256="0" * 64,
                 create_time=1) for number, owner in enumerate(["bob"] * 3 + ["ghost"])]
    added = [library.store.add(row, quota=2500) for row in rows]  # in one reactor turn
    results = await defer.DeferredList(added, consumeErrors=True)
    # The quota lets two of bob's three rows in; the account that does not exist fails alone.
    assert [result for ok, result in results[:3]] == [True, True, False]
    assert not results[3][0] and results[3][1].check(MissingReference)
    assert transactions == ["_add_many"] * 5  # all four together, then each alone after the failure
    assert [row["name"] for row in await library.store.owned("bob")] == ["bob_1_0", "bob_1_1"]

    transactions.clear()
    added = [library.store.add(dict(row, owner="+86101", name=f"%2B86101_1_{n}")) for n, row in enumerate(rows)]
    assert await defer.gatherResults(added) == [True] * 4
    assert transactions == ["_add_many"]


@pytest_twisted.ensureDeferred
async def test_same_millisecond_uploads_get_distinct_names(library):
    uploads = [await library.begin_upload("+86101", "a.png") for _ in range(3)]
    assert len({upload.name for upload in uploads}) == 3
    names = [(await upload.finish()).name for upload in uploads]
    assert sorted(names) == on_disk(library)[0]


@pytest_twisted.ensureDeferred
async def test_too_large_and_aborted_uploads_leave_nothing(library):
    upload = await library.begin_upload("+86101", "big.bin")
    upload.write(b"x" * 1000)
    with pytest.raises(FileTooLarge):
        upload.write(b"x")
    with pytest.raises(FileTooLarge):
        await upload.finish()
    aborted = await library.begin_upload("+86101", "cut.bin")
    aborted.write(b"x" * 10)
    aborted.abort()
    aborted.abort()
    assert on_disk(library) == ([], [])
    assert await library.store.owned("+86101") == []


@pytest_twisted.ensureDeferred
async def test_quota_counts_committed_files(library):
    for size in (1000, 1000):
        upload = await library.begin_upload("+86101", "a")
        upload.write(b"x" * size)
        await upload.finish()
    upload = await library.begin_upload("+86101", "a")
    upload.write(b"x" * 500)
    with pytest.raises(QuotaExceeded):
        upload.write(b"x")
    # Two uploads started together: the second to finish is refused.
    first, second = [await library.begin_upload("+86101", "a") for _ in range(2)]
    first.write(b"x" * 400)
    second.write(b"x" * 400)
    await first.finish()
    with pytest.raises(QuotaExceeded):
        await second.finish()
    assert len(on_disk(library)[0]) == 3 and on_disk(library)[1] == []
    assert await library.store.used_bytes("+86101") == 2400
    last = await library.begin_upload("+86101", "a")
    last.write(b"x" * 100)
    await last.finish()
    with pytest.raises(QuotaExceeded):
        await library.begin_upload("+86101", "a")


@pytest_twisted.ensureDeferred
async def test_grants_only_cover_files_the_author_may_read(library):
    upload = await library.begin_upload("+86101", "mine.txt")
    upload.write(b"hello")
    mine = (await upload.finish()).name
    text = f"see <file>{mine}</file>"
    assert await library.grant_for_message("bob", references(text), recipients=["+86101"]) == []
    assert await library.grant_for_message("+86101", references(text), recipients=["bob"]) == [mine]
    assert await library.grant_for_message("+86101", [mine], recipients=["bob"]) == [mine]  # idempotent
    assert await library.may_read("bob", mine)
    assert [row["name"] for row in await library.readable_files("bob")] == [mine]
