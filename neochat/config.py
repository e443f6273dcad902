"""Settings: everything the command line, a .tac file or a test can set."""

import os
from dataclasses import dataclass, field
from pathlib import Path

DB_URL_VARIABLE = "NEOCHAT_DB"


@dataclass
class Settings:
    listen: list = field(default_factory=lambda: ["tcp:7000"])
    # Database URL; None means $NEOCHAT_DB, else SQLite in data_dir.
    db_url: str = None
    data_dir: Path = Path("neochat-data")
    # argon2id cost.  The defaults are argon2-cffi's (RFC 9106 low-memory).
    hash_time_cost: int = 3
    hash_memory_kib: int = 65536

    @classmethod
    def from_environment(cls):
        """For .tac files: $NEOCHAT_LISTEN (space separated endpoints),
        $NEOCHAT_DATA and $NEOCHAT_DB."""
        settings = cls()
        if os.environ.get("NEOCHAT_LISTEN"):
            settings.listen = os.environ["NEOCHAT_LISTEN"].split()
        if os.environ.get("NEOCHAT_DATA"):
            settings.data_dir = Path(os.environ["NEOCHAT_DATA"])
        return settings

    def database_url(self):
        return self.db_url or os.environ.get(DB_URL_VARIABLE) or ""
