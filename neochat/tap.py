"""``twistd neochat``: command-line options and the service they build."""

import sys
from pathlib import Path

from twisted.python import usage

from neochat import config_file, logs
from neochat.chat.calls import P2P, RELAY, CallLimits
from neochat.chat.throttle import ThrottleSettings
from neochat.config import DB_URL_VARIABLE, Settings
from neochat.services.cell import PortRange
from neochat.services.ftp import FtpSettings
from neochat.services.limits import Limits
from neochat.services.root import build_service
from neochat.services.tls import ssl_files

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
        ["ftp-tls-required", None,
         "Refuse FTP logins and transfers without TLS (needs --ftp-cert or an ssl: --listen)."],
    ]
    optParameters = [
        ["config", None, None,
         "TOML file holding any of these options by the same names (see neochat.example.toml);"
         f" options on the command line override it (default: ${config_file.CONFIG_VARIABLE})."],
        ["db", None, None,
         "Database URL: sqlite:PATH or mysql://user:password@host:port/dbname "
         f"(default: ${DB_URL_VARIABLE}, else SQLite in the data dir)."],
        ["data-dir", None, "neochat-data", "Directory for the SQLite database and files."],
        ["db-retry", None, 10.0, "Seconds a request waits for a lost database before failing with 503.", float],
        ["argon2-time-cost", None, 2, "argon2id passes per password hash.", int],
        ["argon2-memory", None, 19456, "argon2id memory per password hash, in KiB.", int],
        ["hash-threads", None, 2, "Threads hashing passwords.", int],
        ["hash-queue", None, 64, "Password hashes waiting for a thread before logins get 503.", int],
        ["token-days", None, 7, "Days a resume token stays valid.", float],
        ["log-format", None, "text", "Log lines as text or json (JSON lines, one event each, with fields).",
         logs.log_format],
        ["metrics", None, None,
         "Endpoint of the Prometheus metrics page, e.g. tcp:9100:interface=127.0.0.1 (default: off)."],
        ["cell", None, 10010, "UDP port of the cell server: call keys and keyed media (0: any free port).", int],
        ["cell-interface", None, "0.0.0.0", "Interface the cell port and the relay ports bind."],
        ["udp-buffer", None, 4096,
         "Receive and send buffer of the cell and relay ports, in KiB (0: the kernel's; capped by "
         "net.core.rmem_max and wmem_max).", int],
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
        ["ftp-cert", None, None,
         "PEM certificate: enables FTPS (AUTH TLS). Default: the first ssl: --listen endpoint's, if any."],
        ["ftp-key", None, None, "PEM private key for --ftp-cert (default: in the certificate file)."],
        ["max-file-size", None, 256, "Largest file, FTP or in-band, in MiB (0: no limit).", int],
        ["user-quota", None, 1024, "Bytes of files one account may own, in MiB (0: no quota).", int],
        ["file-retention-days", None, 0, "Delete files older than this many days (0: keep forever).", float],
        ["presence-interval", None, 0.5,
         "Seconds between two presence updates (coalesced logins and logouts).", float],
        ["cluster", None, None,
         "Redis URL (redis://HOST:PORT/DB) shared by several nodes; none: a single node without Redis."],
        ["node-id", None, None, "This node's name in the cluster (default: hostname-PORT)."],
        ["cluster-prefix", None, "neochat:", "Prefix of this cluster's Redis keys and channels."],
        ["cluster-heartbeat", None, 5.0,
         "Seconds between a cluster node's heartbeats; a node is dead after three missed.", float],
        ["cluster-max-clip", None, 1024,
         "Largest voice clip, in KiB, to an account on another node of the cluster (413 past it).", int],
        ["behind-deadline", None, 60.0,
         "Seconds a client may stay behind (not reading) before it is dropped; it loses nothing stored.", float],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["http"] = []
        self["http-origins"] = []
        self["call-limits"] = CallLimits()
        self["limits"] = Limits()
        self["throttle"] = ThrottleSettings()

    def parseOptions(self, options=None):
        """The config file's options first, then the command line's.  Under
        twistd, a bad option is one line on stderr and exit status 1."""
        argv = sys.argv[1:] if options is None else list(options)
        try:
            path = config_file.config_path(argv)
            if path:
                config_file.check(path, type(self))
                argv = config_file.merged_arguments(path, self, argv)
            super().parseOptions(argv)
        except usage.UsageError as error:
            if self.parent is None:
                raise
            raise SystemExit(f"twistd neochat: {error}") from None

    def _override(self, key, flag, assignment):
        """``--flag NAME=VALUE``: one setting of the settings object under ``key``."""
        name, _, value = assignment.partition("=")
        try:
            self[key] = self[key].override(name.strip(), value.strip())
        except ValueError as error:
            raise usage.UsageError(f"--{flag} {assignment}: {error}") from None

    def opt_call_limit(self, assignment):
        """NAME=VALUE: change one call limit (repeatable): max_calls_per_user (2),
        max_calls_total (1000), request_timeout (30 s), idle_timeout (60 s),
        key_requests_per_ip (10) per key_request_window (10 s),
        unclaimed_keys_per_ip (4), unclaimed_keys_total (256), unclaimed_key_timeout (30 s), and
        audio.* / video.* max_datagram (1400 / 8192 bytes), packets_per_second
        (200 / 2000) and bytes_per_second (64000 / 1250000)."""
        self._override("call-limits", "call-limit", assignment)

    def opt_limit(self, assignment):
        """NAME=VALUE: change one message-server limit, TCP and WebSocket (repeatable; 0: off):
        frame_before_login (8192 B), bytes_before_login (65536), json_object
        (65536 B), header_frame (256 KiB), header_body (voice clips:
        16 MiB), login_timeout (60 s), idle_timeout
        (600 s), connections_per_address (20), connections_total (0: the
        descriptor limit less 5 %, at least 256), messages_per_second (50),
        message_burst (200), bytes_per_second (8 MiB), byte_burst (32 MiB),
        max_group_size (1000), voice_spool_per_sender (64 MiB),
        voice_spool_total (1 GiB)."""
        self._override("limits", "limit", assignment)

    def opt_throttle(self, assignment):
        """NAME=VALUE: change one login or registration throttle (repeatable;
        0: off): registrations_per_address (5) per registration_window
        (3600 s); account.free (5 failed logins), account.lock_after (20),
        account.lock_seconds (900), account.max_delay (60 s); the same for
        address.* (10, 20, 3600, 60); max_entries (10000 per table)."""
        self._override("throttle", "throttle", assignment)

    def opt_listen(self, description):
        """Twisted endpoint for the message server, e.g. tcp:7000 or
        ssl:7443:privateKey=key.pem:certKey=cert.pem (repeatable; default tcp:7000)."""
        self["listen"].append(description)

    def opt_http(self, description):
        """Twisted endpoint for the web client (WebSocket, files, the page), e.g.
        tcp:8080:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem
        (repeatable; default: off)."""
        self["http"].append(description)

    def opt_http_origin(self, origin):
        """Origin allowed to open the WebSocket besides the page's own, e.g.
        https://chat.example.org (repeatable)."""
        self["http-origins"].append(origin.rstrip("/"))

    def postOptions(self):
        for name in ("relay-ports", "client-ports"):
            self[name] = port_range(self[name])
        if self["client-ports"][0] == 0:
            raise usage.UsageError("--client-ports needs real port numbers")
        if self["ftp-passive-ports"]:
            self["ftp-passive-ports"] = port_range(self["ftp-passive-ports"])
        if self["ftp-tls-required"] and not (self["ftp-cert"] or any(ssl_files(d) for d in self["listen"])):
            raise usage.UsageError("--ftp-tls-required needs --ftp-cert or an ssl: --listen endpoint")
        if self.parent is not None:
            logs.use(self["log-format"], self.parent)

    def settings(self):
        settings = Settings(
            db_url=self["db"],
            data_dir=Path(self["data-dir"]),
            db_retry_seconds=self["db-retry"],
            hash_time_cost=self["argon2-time-cost"],
            hash_memory_kib=self["argon2-memory"],
            hash_threads=self["hash-threads"],
            hash_queue=self["hash-queue"],
            token_lifetime=self["token-days"] * 24 * 3600,
            cell_port=self["cell"],
            cell_interface=self["cell-interface"],
            udp_buffer=self["udp-buffer"] * 1024,
            relay_ports=self["relay-ports"],
            client_ports=self["client-ports"],
            advertise_ip=self["advertise-ip"],
            voice_mode=self["voice"],
            call_limits=self["call-limits"],
            limits=self["limits"],
            throttle=self["throttle"],
            friends_only=bool(self["friends-only"]),
            http=self["http"],
            http_origins=self["http-origins"],
            metrics=self["metrics"],
            log_format=self["log-format"],
            presence_interval=self["presence-interval"],
            behind_deadline=self["behind-deadline"],
            cluster=self["cluster"],
            node_id=self["node-id"],
            cluster_prefix=self["cluster-prefix"],
            cluster_heartbeat=self["cluster-heartbeat"],
            cluster_max_clip=self["cluster-max-clip"] * 1024,
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
    return build_service(options.settings(), owns_process=True)


def settings_from_environment():
    """For .tac files: the options of the $NEOCHAT_CONFIG file if it is set,
    then the NEOCHAT_* variables (Settings.from_environment)."""
    options = Options()
    try:
        options.parseOptions([])
    except usage.UsageError as error:
        raise SystemExit(f"NeoChat could not start: {error}") from None
    return Settings.from_environment(options.settings())
