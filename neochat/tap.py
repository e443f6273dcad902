"""``twistd neochat``: command-line options and the service they build."""

from pathlib import Path

from twisted.python import usage

from neochat.chat.calls import P2P, RELAY, CallLimits
from neochat.config import DB_URL_VARIABLE, Settings
from neochat.services.cell import PortRange
from neochat.services.ftp import FtpSettings
from neochat.services.root import build_service

VOICE_MODES = (RELAY, P2P)
MIB = 1024 * 1024


def voice_mode(text):
    if text not in VOICE_MODES:
        raise ValueError(text)
    return text


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Runs the NeoChat message server (both dialects on each --listen endpoint),"
        " the FTP file server (--ftp) and the cell server for calls (--cell)."
        f" The database URL may also come from ${DB_URL_VARIABLE}."
    )
    optFlags = [
        ["friends-only", None, "Private chat only between accepted friends (default: anyone)."],
        ["ftp-tls-required", None, "Refuse FTP logins and transfers without TLS (needs --ftp-cert)."],
    ]
    optParameters = [
        ["db", None, None,
         "Database URL: sqlite:PATH or mysql://user:password@host:port/dbname "
         f"(default: ${DB_URL_VARIABLE}, else SQLite in the data dir)."],
        ["data-dir", None, "neochat-data", "Directory for the SQLite database and files."],
        ["argon2-time-cost", None, 3, "argon2id passes per password hash.", int],
        ["argon2-memory", None, 65536, "argon2id memory per password hash, in KiB.", int],
        ["cell", None, 10010, "UDP port of the cell server: call keys and keyed media (0: any free port).", int],
        ["cell-interface", None, "0.0.0.0", "Interface the cell port and the relay ports bind."],
        ["relay-ports", None, "40000-40999",
         "UDP ports relaying seed-000 voice calls, FIRST-LAST, one per party (0-0: any free port)."],
        ["client-ports", None, "41000-41999",
         "Port numbers seed-000 voice clients are told to bind (your_port), FIRST-LAST."],
        ["advertise-ip", None, None,
         "IP clients send relayed media to (other_ip). Default: --cell-interface, or "
         "127.0.0.1 with a warning when that is 0.0.0.0; set it for clients on other hosts."],
        ["voice", None, "relay",
         "Seed-000 voice media: relay (through the cell server) or p2p (peers get each "
         "other's addresses).", voice_mode],
        ["ftp", None, 2121, "TCP port of the FTP file server (0: any free port).", int],
        ["ftp-interface", None, "0.0.0.0", "Interface the FTP server binds."],
        ["ftp-passive-ports", None, None, "FTP passive data ports, FIRST-LAST (default: any free port)."],
        ["ftp-masquerade", None, None, "Address the FTP server announces for passive data (behind NAT)."],
        ["ftp-cert", None, None, "PEM certificate: enables FTPS (AUTH TLS)."],
        ["ftp-key", None, None, "PEM private key for --ftp-cert (default: in the certificate file)."],
        ["max-file-size", None, 256, "Largest file, FTP or in-band, in MiB (0: no limit).", int],
        ["user-quota", None, 1024, "Bytes of files one account may own, in MiB (0: no quota).", int],
        ["file-retention-days", None, 0, "Delete files older than this many days (0: keep forever).", float],
        ["presence-interval", None, 0.5,
         "Seconds between two presence updates (coalesced logins and logouts).", float],
        ["cluster", None, None,
         "Redis URL (redis://HOST:PORT/DB) shared by several nodes; none: a single node without Redis."],
        ["node-id", None, None, "This node's name in the cluster (default: hostname-PORT)."],
        ["behind-deadline", None, 60.0,
         "Seconds a client may stay behind (not reading) before it is dropped; it loses nothing stored.", float],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["call-limits"] = CallLimits()

    def opt_call_limit(self, assignment):
        """NAME=VALUE: change one call limit (repeatable): max_calls_per_user (2),
        max_calls_total (1000), request_timeout (30 s), idle_timeout (60 s),
        key_requests_per_ip (10) per key_request_window (10 s), and
        audio.* / video.* max_datagram (1400 / 8192 bytes), packets_per_second
        (200 / 2000) and bytes_per_second (64000 / 1250000)."""
        name, _, value = assignment.partition("=")
        try:
            self["call-limits"] = self["call-limits"].override(name.strip(), value.strip())
        except ValueError as error:
            raise usage.UsageError(f"--call-limit {assignment}: {error}") from None

    def opt_listen(self, description):
        """Twisted endpoint for the message server, e.g. tcp:7000 or
        ssl:7443:privateKey=key.pem:certKey=cert.pem (repeatable; default tcp:7000)."""
        self["listen"].append(description)

    def postOptions(self):
        for name in ("relay-ports", "client-ports"):
            self[name] = port_range(self[name])
        if self["client-ports"][0] == 0:
            raise usage.UsageError("--client-ports needs real port numbers")
        if self["ftp-passive-ports"]:
            self["ftp-passive-ports"] = port_range(self["ftp-passive-ports"])
        if self["ftp-tls-required"] and not self["ftp-cert"]:
            raise usage.UsageError("--ftp-tls-required needs --ftp-cert")

    def settings(self):
        settings = Settings(
            db_url=self["db"],
            data_dir=Path(self["data-dir"]),
            hash_time_cost=self["argon2-time-cost"],
            hash_memory_kib=self["argon2-memory"],
            cell_port=self["cell"],
            cell_interface=self["cell-interface"],
            relay_ports=self["relay-ports"],
            client_ports=self["client-ports"],
            advertise_ip=self["advertise-ip"],
            voice_mode=self["voice"],
            call_limits=self["call-limits"],
            friends_only=bool(self["friends-only"]),
            presence_interval=self["presence-interval"],
            behind_deadline=self["behind-deadline"],
            cluster=self["cluster"],
            node_id=self["node-id"],
            ftp=FtpSettings(
                interface=self["ftp-interface"],
                port=self["ftp"],
                passive_ports=self["ftp-passive-ports"],
                masquerade_address=self["ftp-masquerade"],
                max_file_size=self["max-file-size"] * MIB,
                user_quota=self["user-quota"] * MIB,
                retention_days=self["file-retention-days"],
                certfile=self["ftp-cert"],
                keyfile=self["ftp-key"],
                tls_required=bool(self["ftp-tls-required"]),
            ),
        )
        if self["listen"]:
            settings.listen = self["listen"]
        return settings


def port_range(text):
    """``FIRST-LAST`` (or one port) as a (first, last) tuple."""
    first, _, last = text.partition("-")
    try:
        ports = int(first), int(last or first)
        PortRange(*ports)  # checks the numbers
    except ValueError:
        raise usage.UsageError(f"bad port range {text!r}: want FIRST-LAST, e.g. 40000-40999") from None
    return ports


def makeService(options):
    return build_service(options.settings())
