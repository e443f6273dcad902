"""Versioned schema: ``schema/NNNN_name.sql`` steps, applied in order at start.

A fresh database runs every step; an older one runs the steps it lacks; a
database newer than this code is refused.  Each step is committed together
with its ``schema_version`` row (SQLite) or right after it (MySQL, where DDL
commits by itself, which is why steps stay small).
"""

import re
import sys
from pathlib import Path

from twisted.internet import defer

STEP_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaTooNew(Exception):
    pass


def schema_dir():
    """The source checkout's ``schema/``, else the copy setup.py installed."""
    for candidate in (
        Path(__file__).resolve().parents[2] / "schema",
        Path(sys.prefix) / "share" / "neochat" / "schema",
    ):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("schema/ directory not found; reinstall neochat")


def steps(directory=None):
    """[(version, path)] in order."""
    directory = directory or schema_dir()
    found = []
    for path in sorted(directory.iterdir()):
        match = STEP_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


def latest_version(directory=None):
    return steps(directory)[-1][0]


def statements(sql_text, macros):
    """Split a script into statements (MySQLdb has no executescript)."""
    lines = [line for line in sql_text.splitlines() if not line.lstrip().startswith("--")]
    for chunk in "\n".join(lines).format(**macros).split(";"):
        if chunk.strip():
            yield chunk.strip()


def _current_version(txn):
    txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    return txn.execute("SELECT MAX(version) FROM schema_version").scalar() or 0


def _apply(txn, version, sql_text, macros):
    for statement in statements(sql_text, macros):
        txn.execute(statement)
    txn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


@defer.inlineCallbacks
def upgrade(db, directory=None):
    """Bring the database to the latest version; returns (from, to)."""
    known = steps(directory)
    newest = known[-1][0]
    current = yield db.run(_current_version)
    if current > newest:
        raise SchemaTooNew(
            f"database {db.dialect.describe()} has schema version {current}, "
            f"but this NeoChat only knows up to {newest}: upgrade NeoChat"
        )
    for version, path in known:
        if version > current:
            yield db.run(_apply, version, path.read_text(encoding="utf-8"), db.dialect.ddl_macros)
    return current, newest
