"""What differs between SQLite and MySQL/MariaDB, kept in one place.

Queries are written once with ``?`` placeholders; a dialect turns them into
its driver's paramstyle.  String literals in queries hold neither ``?`` nor
``%``: values always travel as parameters.
"""

import functools
import sqlite3
from urllib.parse import unquote, urlsplit

from twisted.enterprise import adbapi

# The writer's own automatic checkpoint, in pages of the write-ahead log: a
# bound only, for when store/checkpoint.py's checkpointer falls behind (at
# SQLite's default of 1,000 pages the writer checkpointed several times a
# second under load, and every message waiting for its commit waited).
WRITER_CHECKPOINT_PAGES = 16_000
# Bytes of write-ahead log kept on disk once it starts over.
WAL_SIZE_KEPT = 16 * 1024 * 1024


class SqliteDialect:
    name = "sqlite"
    module = "sqlite3"
    # INSERT that skips rows whose unique key exists: head and tail
    insert_ignore, on_conflict_ignore = "INSERT", " ON CONFLICT DO NOTHING"
    # Statements cost no round trip: a group commit runs one short prepared
    # statement per row (executemany) rather than long multi-row ones, which
    # cost more to build and which sqlite3 would cache with the values last
    # bound to them (up to 200 message texts kept alive).
    in_process = True
    ddl_macros = {
        "auto_id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "text": "TEXT",
        "table_options": "",
    }

    def __init__(self, path):
        self.path = path

    def pool_args(self):
        # One writing connection: SQLite serialises writers anyway, and a
        # second one would only add "database is locked" retries.
        return self._pool_args(1, self._on_open)

    def read_pool_args(self):
        """Readers beside the one writer: WAL lets them see every commit."""
        return self._pool_args(2, self._on_open_reader)

    def checkpoint_pool_args(self):
        """The checkpointer's connection (store/checkpoint.py)."""
        return self._pool_args(1, self._on_open_reader)

    def _pool_args(self, connections, openfun):
        return (self.path,), dict(check_same_thread=False, cp_min=1, cp_max=connections, cp_openfun=openfun)

    @staticmethod
    def _on_open_reader(conn):
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 5000")

    @staticmethod
    def _on_open(conn):
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_KEPT}")
        conn.execute("PRAGMA busy_timeout = 5000")

    def translate(self, sql):
        return sql

    def is_retryable(self, error):
        return False

    def is_connection_error(self, error):
        return False

    def is_unique_violation(self, error):
        return isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error)

    def is_missing_reference(self, error):
        return isinstance(error, sqlite3.IntegrityError) and "FOREIGN KEY" in str(error)

    def describe(self):
        return f"sqlite:{self.path}"


class MysqlDialect:
    name = "mysql"
    module = "MySQLdb"
    insert_ignore, on_conflict_ignore = "INSERT IGNORE", ""
    in_process = False  # one round trip for many rows: multi-row statements
    ddl_macros = {
        "auto_id": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "text": "MEDIUMTEXT",
        # utf8mb4_bin: accounts compare exactly, as they do in SQLite.
        "table_options": "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    }
    # deadlock, lock wait timeout: run the transaction again
    RETRYABLE_CODES = frozenset({1213, 1205})
    # can't connect (socket, TCP), server gone away, lost connection, server
    # shutting down: retry with backoff while it comes back
    CONNECTION_CODES = frozenset({2002, 2003, 2006, 2013, 1053})
    DUPLICATE_KEY = 1062
    MISSING_PARENT_ROW = 1452

    def __init__(self, host, port, user, password, database):
        self.host, self.port, self.user = host, port, user
        self.password, self.database = password, database

    def pool_args(self):
        return (), dict(
            host=self.host,
            port=self.port,
            user=self.user,
            passwd=self.password,
            db=self.database,
            charset="utf8mb4",
            cp_min=1,
            cp_max=8,  # the message writer, other writes and reads beside them
            cp_reconnect=True,
            connect_timeout=5,
            cp_openfun=self._on_open,
        )

    def read_pool_args(self):
        return None  # reads share the pool, sized for them

    def checkpoint_pool_args(self):
        return None  # InnoDB checkpoints on its own threads

    @staticmethod
    def _on_open(conn):
        cursor = conn.cursor()
        cursor.execute(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,"
            "NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'"
        )
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.close()
        conn.commit()

    @functools.lru_cache(maxsize=512)
    def translate(self, sql):
        return sql.replace("%", "%%").replace("?", "%s")

    def _code(self, error):
        args = getattr(error, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def is_retryable(self, error):
        return self._code(error) in self.RETRYABLE_CODES

    def is_connection_error(self, error):
        return isinstance(error, adbapi.ConnectionLost) or self._code(error) in self.CONNECTION_CODES

    def is_unique_violation(self, error):
        return self._code(error) == self.DUPLICATE_KEY

    def is_missing_reference(self, error):
        return self._code(error) == self.MISSING_PARENT_ROW

    def describe(self):
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def dialect_from_url(url, data_dir):
    """``sqlite:PATH`` / ``sqlite:///abs/path`` or ``mysql://user:pw@host:port/db``.

    An empty URL means the embedded default, ``<data_dir>/neochat.sqlite``.
    """
    if not url:
        return SqliteDialect(str(data_dir / "neochat.sqlite"))
    if url.startswith("sqlite:"):
        # sqlite:relative.db, sqlite://relative.db, sqlite:///abs/path.db
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path or path == ":memory:":
            raise ValueError("sqlite URL needs a file path (':memory:' is not shared between connections)")
        return SqliteDialect(path)
    parts = urlsplit(url)
    if parts.scheme in ("mysql", "mariadb"):
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("mysql URL needs a database name: mysql://user:pw@host:port/dbname")
        return MysqlDialect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
        )
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r} (use sqlite: or mysql://)")
