"""Schema steps on SQLite and MariaDB: an upgrade from version 1 ends where a
fresh database starts, and a database newer than the code is refused."""

import shutil

import pytest
import pytest_twisted
from twisted.internet import reactor

from neochat.store import Database, dialect_from_url
from neochat.store.schema import (
    SchemaTooNew,
    latest_version,
    schema_dir,
    steps,
    upgrade,
)
from tests.conftest import _mysql_database


@pytest.fixture
def other_db_url(db_url, tmp_path):
    """A second empty database on the same engine."""
    if db_url.startswith("sqlite:"):
        yield f"sqlite:{tmp_path / 'other.sqlite'}"
        return
    url, drop = _mysql_database()
    yield url
    drop()


def _sqlite_dump(txn):
    rows = txn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    return [
        (kind, name, table, " ".join((sql or "").split()))
        for kind, name, table, sql in rows.fetchall()
        if not name.startswith("sqlite_")
    ]


MYSQL_QUERIES = (
    (
        "SELECT table_name, column_name, ordinal_position, column_type, is_nullable,"
        " column_default, extra, collation_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position"
    ),
    (
        "SELECT table_name, index_name, seq_in_index, column_name, non_unique"
        " FROM information_schema.statistics WHERE table_schema = DATABASE()"
        " ORDER BY table_name, index_name, seq_in_index"
    ),
    (
        "SELECT k.table_name, k.column_name, k.referenced_table_name, k.referenced_column_name,"
        " r.delete_rule FROM information_schema.key_column_usage k"
        " JOIN information_schema.referential_constraints r"
        " ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name"
        " WHERE k.table_schema = DATABASE() ORDER BY k.table_name, k.column_name"
    ),
    (
        "SELECT table_name, check_clause FROM information_schema.check_constraints"
        " WHERE constraint_schema = DATABASE() ORDER BY table_name, constraint_name"
    ),
)


def _mysql_dump(txn):
    return [[tuple(row) for row in txn.execute(query).fetchall()] for query in MYSQL_QUERIES]


async def dump(db):
    shape = await db.run(_sqlite_dump if db.dialect.name == "sqlite" else _mysql_dump)
    versions = await db.run(
        lambda txn: txn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    )
    return shape, [row[0] for row in versions]


def open_db(url, tmp_path):
    return Database(dialect_from_url(url, tmp_path), reactor)


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_1_matches_a_fresh_database(db_url, other_db_url, tmp_path):
    fresh, upgraded = open_db(db_url, tmp_path), open_db(other_db_url, tmp_path)
    try:
        assert await upgrade(fresh) == (0, latest_version())

        version_1 = tmp_path / "schema_v1"
        version_1.mkdir()
        first = steps()[0]
        assert first[0] == 1
        shutil.copy(first[1], version_1)
        assert await upgrade(upgraded, version_1) == (0, 1)
        assert await upgrade(upgraded) == (1, latest_version())

        fresh_dump, upgraded_dump = await dump(fresh), await dump(upgraded)
        assert fresh_dump == upgraded_dump
        assert fresh_dump[1] == [version for version, _ in steps()]
        assert await upgrade(upgraded) == (latest_version(), latest_version())  # nothing left to do
    finally:
        fresh.close()
        upgraded.close()


@pytest_twisted.ensureDeferred
async def test_a_database_newer_than_the_code_is_refused(db_url, tmp_path):
    db = open_db(db_url, tmp_path)
    try:
        await upgrade(db)
        newer = latest_version(schema_dir()) + 1
        await db.run(lambda txn: txn.execute("INSERT INTO schema_version (version) VALUES (?)", [newer]))
        with pytest.raises(SchemaTooNew):
            await upgrade(db)
    finally:
        db.close()
