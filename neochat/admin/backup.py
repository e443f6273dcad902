"""``neochatctl backup DIR`` and ``restore DIR``.

A backup is a directory: ``neochat.sqlite`` (a consistent copy through the
SQLite backup API) or ``neochat.sql`` (``mysqldump --single-transaction``),
then ``files/``, then ``backup.json``.  It can be taken while the server
runs: the database is copied first, and every file its rows name was on
disk before its row was committed, so the copy of ``files/`` that follows
holds them all.  ``restore`` fills an empty data dir (and an empty MySQL
database) while the server is stopped.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from neochat.admin import client
from neochat.services.admin import socket_path
from neochat.store import dialect_from_url
from neochat.store.admin import connect

MANIFEST = "backup.json"
SQLITE_COPY, MYSQL_DUMP = "neochat.sqlite", "neochat.sql"


def backup(settings, directory):
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not empty: back up into a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    dialect = dialect_from_url(settings.database_url(), settings.data_dir)
    if dialect.name == "sqlite":
        if not Path(dialect.path).exists():
            raise ValueError(f"no database at {dialect.path}")
        _sqlite_backup(dialect.path, directory / SQLITE_COPY)
    else:
        _mysql("mysqldump", dialect, ["--single-transaction", "--no-tablespaces", "--skip-comments",
                                      f"--result-file={directory / MYSQL_DUMP}"])
    files, size = _copy_files(settings.data_dir / "files", directory / "files")
    manifest = {"engine": dialect.name, "created": int(time.time()), "files": files, "bytes": size}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {"directory": str(directory), **manifest}


def restore(settings, directory):
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise ValueError(f"{directory} is not a NeoChat backup (no {MANIFEST})") from None
    if client.server_running(socket_path(settings)):
        raise ValueError("the server is running: stop it before restoring")
    dialect = dialect_from_url(settings.database_url(), settings.data_dir)
    if manifest["engine"] != dialect.name:
        raise ValueError(f"the backup is of a {manifest['engine']} database, the server uses {dialect.name}")
    files_dir = settings.data_dir / "files"
    if files_dir.exists() and any(path.is_file() for path in files_dir.iterdir()):
        raise ValueError(f"{files_dir} holds files: restore into an empty data dir")
    if dialect.name == "sqlite":
        target = Path(dialect.path)
        if target.exists():
            raise ValueError(f"{target} exists: restore into an empty data dir")
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_backup(directory / SQLITE_COPY, target)
    else:
        _require_empty_mysql(dialect)
        with open(directory / MYSQL_DUMP, "rb") as dump:
            _mysql("mysql", dialect, [], stdin=dump)
    files, size = _copy_files(directory / "files", files_dir)
    return {"directory": str(directory), "engine": dialect.name, "files": files, "bytes": size}


def _sqlite_backup(source, target):
    """A consistent copy even while the server writes (WAL: it is not blocked)."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as reader, sqlite3.connect(target) as writer:
        reader.backup(writer)
    sqlite3.connect(target).close()


def _copy_files(source, target):
    """Copy the stored files (not partial uploads); (count, bytes)."""
    target.mkdir(parents=True, exist_ok=True)
    count = size = 0
    if not source.is_dir():
        return count, size
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
            count += 1
            size += path.stat().st_size
    return count, size


def _mysql(program, dialect, arguments, stdin=None):
    """Run a MySQL client program; the password goes in the environment, never in ps."""
    command = [program, f"--host={dialect.host}", f"--port={dialect.port}", f"--user={dialect.user}",
               "--default-character-set=utf8mb4", *arguments, dialect.database]
    environment = dict(os.environ, MYSQL_PWD=dialect.password)
    try:
        result = subprocess.run(command, stdin=stdin, capture_output=True, env=environment)
    except FileNotFoundError:
        raise ValueError(f"{program} not found: install the MariaDB client (apt-get install mariadb-client)") from None
    if result.returncode != 0:
        raise ValueError(f"{program} failed: {result.stderr.decode(errors='replace').strip()}")


def _require_empty_mysql(dialect):
    connection = connect(dialect)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()")
        if cursor.fetchone()[0]:
            raise ValueError(f"{dialect.describe()} has tables: restore into an empty database")
    finally:
        connection.close()
