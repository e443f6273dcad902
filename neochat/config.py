"""Settings: everything the command line, a .tac file or a test can set."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from neochat.chat.calls import CallLimits
from neochat.services.ftp import FtpSettings

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
    # Private chat only between accepted friends.
    friends_only: bool = False
    # The delivery pipeline (docs/protocol.md, "Offline delivery"): seconds
    # between two presence flushes, and how long a client may stay behind
    # (not reading) before it is dropped.
    presence_interval: float = 0.5
    behind_deadline: float = 60.0
    # The cell server (calls, docs/protocol.md "Calls").  Port ranges are
    # (first, last); relay_ports (0, 0) means any free port.  advertise_ip is
    # where clients send relayed media; None: cell_interface, or 127.0.0.1
    # (with a warning) when that is all interfaces.
    cell_port: int = 10010
    cell_interface: str = "0.0.0.0"
    relay_ports: tuple = (40000, 40999)
    client_ports: tuple = (41000, 41999)
    advertise_ip: str = None
    voice_mode: str = "relay"  # or "p2p": seed-000 voice media goes peer to peer
    call_limits: CallLimits = field(default_factory=CallLimits)
    # The FTP file server and the file limits it shares with in-band
    # transfers (docs/files.md).
    ftp: FtpSettings = field(default_factory=FtpSettings)
    # Several nodes as one (docs/scaling.md): a redis:// URL, or None for a
    # single node without Redis.  node_id None: hostname and first listen
    # port.  Keys and channels are under cluster_prefix; a node is dead after
    # three cluster_heartbeat seconds without a heartbeat.
    cluster: str = None
    node_id: str = None
    cluster_prefix: str = "neochat:"
    cluster_heartbeat: float = 5.0

    @classmethod
    def from_environment(cls):
        """For .tac files: $NEOCHAT_LISTEN (space separated endpoints),
        $NEOCHAT_CELL (cell server UDP port), $NEOCHAT_FTP (FTP port),
        $NEOCHAT_DATA and $NEOCHAT_DB."""
        settings = cls()
        if os.environ.get("NEOCHAT_LISTEN"):
            settings.listen = os.environ["NEOCHAT_LISTEN"].split()
        if os.environ.get("NEOCHAT_CELL"):
            settings.cell_port = int(os.environ["NEOCHAT_CELL"])
        if os.environ.get("NEOCHAT_FTP"):
            settings.ftp.port = int(os.environ["NEOCHAT_FTP"])
        if os.environ.get("NEOCHAT_DATA"):
            settings.data_dir = Path(os.environ["NEOCHAT_DATA"])
        return settings

    def database_url(self):
        return self.db_url or os.environ.get(DB_URL_VARIABLE) or ""
