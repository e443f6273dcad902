"""Settings: everything the command line, a .tac file or a test can set."""

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from neochat.chat.calls import CallLimits
from neochat.chat.throttle import ThrottleSettings
from neochat.services.ftp import FtpSettings
from neochat.services.limits import Limits

DB_URL_VARIABLE = "NEOCHAT_DB"


def listen_port(description):
    """The port of an endpoint description (``tcp:7000``, ``ssl:port=7000:...``,
    ``unix:/run/neochat.sock``), made safe for a file name."""
    arguments = description.split(":")[1:]
    named = [argument[len("port="):] for argument in arguments if argument.startswith("port=")]
    positional = [argument for argument in arguments if "=" not in argument]
    port = (named or positional or [description])[0]
    return re.sub(r"[^A-Za-z0-9.-]", "_", port.strip("/"))


@dataclass
class Settings:
    listen: list = field(default_factory=lambda: ["tcp:7000"])
    # The web client (docs/protocol.md "WebSocket and HTTP"): endpoints of
    # its site (none: off), and origins allowed besides the page's own.
    http: list = field(default_factory=list)
    http_origins: list = field(default_factory=list)
    # Database URL; None means $NEOCHAT_DB, else SQLite in data_dir.
    db_url: str = None
    # Seconds a request waits for a lost database before "database unavailable".
    db_retry_seconds: float = 10.0
    data_dir: Path = Path("neochat-data")
    # argon2id cost: OWASP's baseline (t=2, 19 MiB, p=1), hashed by
    # hash_threads threads with at most hash_queue more waiting (then 503).
    hash_time_cost: int = 2
    hash_memory_kib: int = 19456
    hash_threads: int = 2
    hash_queue: int = 64
    # Resume tokens last this long (seconds); the key is in data_dir.
    token_lifetime: float = 7 * 24 * 3600
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    # Private chat only between accepted friends.
    friends_only: bool = False
    # Endpoint of the Prometheus metrics page (None: off), and "text" or
    # "json" log lines (the .tac files honour log_format themselves).
    metrics: str = None
    log_format: str = "text"
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
    udp_buffer: int = 4 * 1024 * 1024  # SO_RCVBUF and SO_SNDBUF of the cell and relay ports; 0: the kernel's
    # The FTP file server and the file limits it shares with in-band
    # transfers (docs/files.md).
    ftp: FtpSettings = field(default_factory=FtpSettings)
    # Limits of the message server (docs/protocol.md "Limits").
    limits: Limits = field(default_factory=Limits)
    # Several nodes as one (docs/scaling.md): a redis:// URL, or None for a
    # single node without Redis.  node_id None: hostname and first listen
    # port.  Keys and channels are under cluster_prefix; a node is dead after
    # three cluster_heartbeat seconds without a heartbeat, and a request to
    # another node fails after cluster_ask_timeout seconds.  A voice clip to
    # an account on another node may have cluster_max_clip bytes (413 past).
    cluster: str = None
    node_id: str = None
    cluster_prefix: str = "neochat:"
    cluster_heartbeat: float = 5.0
    cluster_ask_timeout: float = 5.0
    cluster_max_clip: int = 1024 * 1024

    @classmethod
    def from_environment(cls, settings=None):
        """For .tac files: ``settings`` (default: the defaults) changed by
        $NEOCHAT_LISTEN and $NEOCHAT_HTTP (space separated endpoints),
        $NEOCHAT_CELL (cell server UDP port), $NEOCHAT_FTP (FTP port),
        $NEOCHAT_DATA and $NEOCHAT_DB."""
        settings = settings or cls()
        if os.environ.get("NEOCHAT_LISTEN"):
            settings.listen = os.environ["NEOCHAT_LISTEN"].split()
        if os.environ.get("NEOCHAT_HTTP"):
            settings.http = os.environ["NEOCHAT_HTTP"].split()
        if os.environ.get("NEOCHAT_CELL"):
            settings.cell_port = int(os.environ["NEOCHAT_CELL"])
        if os.environ.get("NEOCHAT_FTP"):
            settings.ftp.port = int(os.environ["NEOCHAT_FTP"])
        if os.environ.get("NEOCHAT_DATA"):
            settings.data_dir = Path(os.environ["NEOCHAT_DATA"])
        return settings

    def node_name(self):
        """This node's name in a cluster: node_id, else hostname and the
        first listen port."""
        return self.node_id or f"{socket.gethostname()}-{listen_port(self.listen[0])}"

    def node_file(self, stem, suffix=""):
        """A path in the data dir that is this node's own: the nodes of a
        cluster share the data dir, so each one's name carries the node's."""
        return self.data_dir / (f"{stem}-{self.node_name()}{suffix}" if self.cluster else f"{stem}{suffix}")

    def database_url(self):
        return self.db_url or os.environ.get(DB_URL_VARIABLE) or ""
