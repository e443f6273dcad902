"""``twistd neochat``: command-line options and the service they build."""

from pathlib import Path

from twisted.python import usage

from neochat.config import DB_URL_VARIABLE, Settings
from neochat.services.root import build_service


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Runs the NeoChat message server (both dialects on each --listen endpoint)."
        f" The database URL may also come from ${DB_URL_VARIABLE}."
    )
    optParameters = [
        ["db", None, None,
         "Database URL: sqlite:PATH or mysql://user:password@host:port/dbname "
         f"(default: ${DB_URL_VARIABLE}, else SQLite in the data dir)."],
        ["data-dir", None, "neochat-data", "Directory for the SQLite database and files."],
        ["argon2-time-cost", None, 3, "argon2id passes per password hash.", int],
        ["argon2-memory", None, 65536, "argon2id memory per password hash, in KiB.", int],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description):
        """Twisted endpoint for the message server, e.g. tcp:7000 or
        ssl:7443:privateKey=key.pem:certKey=cert.pem (repeatable; default tcp:7000)."""
        self["listen"].append(description)

    def settings(self):
        settings = Settings(
            db_url=self["db"],
            data_dir=Path(self["data-dir"]),
            hash_time_cost=self["argon2-time-cost"],
            hash_memory_kib=self["argon2-memory"],
        )
        if self["listen"]:
            settings.listen = self["listen"]
        return settings


def makeService(options):
    return build_service(options.settings())
