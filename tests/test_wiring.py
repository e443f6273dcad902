"""The twistd plugin, its options, the .tac files and the service tree."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from twisted.python import usage

from neochat.chat.calls import CallLimits
from neochat.chat.files import FileLimits
from neochat.config import Settings
from neochat.services.root import NeoChatService, advertised_ip
from neochat.tap import Options, makeService
from tests.twistd_process import TWISTD, free_port

ROOT = Path(__file__).resolve().parents[1]


def test_options_have_working_defaults():
    options = Options()
    options.parseOptions([])
    settings = options.settings()
    assert settings.listen == ["tcp:7000"]
    assert settings.data_dir == Path("neochat-data")
    assert settings.db_url is None


def test_listen_repeats_and_db_url_comes_from_the_environment(monkeypatch, tmp_path):
    options = Options()
    options.parseOptions(["--listen", "tcp:7001", "--listen", "tcp:7002:interface=127.0.0.1",
                          "--data-dir", str(tmp_path)])
    settings = options.settings()
    assert settings.listen == ["tcp:7001", "tcp:7002:interface=127.0.0.1"]
    monkeypatch.setenv("NEOCHAT_DB", "sqlite:/tmp/from-env.db")
    assert settings.database_url() == "sqlite:/tmp/from-env.db"


def test_cell_options_reach_the_cell_service(tmp_path):
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--cell", "0", "--cell-interface", "127.0.0.1",
                          "--relay-ports", "0-0", "--client-ports", "50000-50009", "--voice", "p2p"])
    settings = options.settings()
    assert (settings.relay_ports, settings.client_ports, settings.voice_mode) == ((0, 0), (50000, 50009), "p2p")
    root = makeService(options)
    assert (root.cell.port_number, root.cell.interface, root.cell.mode) == (0, "127.0.0.1", "p2p")
    root.db.close()


@pytest.mark.parametrize("args", [["--relay-ports", "40999-40000"], ["--client-ports", "0-0"], ["--voice", "sip"]])
def test_bad_cell_options_are_usage_errors(args):
    with pytest.raises(usage.UsageError):
        Options().parseOptions(args)


def test_relay_on_all_interfaces_advertises_loopback_unless_told():
    assert advertised_ip(Settings()) == "127.0.0.1"
    assert advertised_ip(Settings(advertise_ip="203.0.113.7")) == "203.0.113.7"
    assert advertised_ip(Settings(cell_interface="192.0.2.1")) is None  # the cell service uses the interface


def test_file_options_reach_the_ftp_service_and_the_library(tmp_path):
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--ftp", "0", "--ftp-interface", "127.0.0.1",
                          "--ftp-passive-ports", "50000-50009", "--max-file-size", "2",
                          "--user-quota", "3", "--file-retention-days", "7", "--friends-only"])
    root = makeService(options)
    ftp = root.ftp_service.settings
    assert (ftp.port, ftp.interface, ftp.passive_ports) == (0, "127.0.0.1", (50000, 50009))
    assert root.files.limits == FileLimits(max_file_size=2 * 2**20, user_quota=3 * 2**20, retention_days=7)
    assert root.chat.friends_only
    root.db.close()


def test_call_limits_are_configurable(tmp_path):
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--call-limit", "idle_timeout=90",
                          "--call-limit", "video.max_datagram=4000", "--call-limit", "max_calls_per_user=1"])
    root = makeService(options)
    limits = root.cell.registry.limits
    assert (limits.idle_timeout, limits.video.max_datagram, limits.max_calls_per_user) == (90.0, 4000, 1)
    assert limits.audio == CallLimits().audio
    root.db.close()


@pytest.mark.parametrize("args", [["--ftp-passive-ports", "9-1"], ["--ftp-tls-required"],
                                  ["--call-limit", "nonsense=1"], ["--call-limit", "idle_timeout=soon"],
                                  ["--call-limit", "audio.colour=1"], ["--call-limit", "max_calls_total=-1"]])
def test_bad_file_options_are_usage_errors(args):
    with pytest.raises(usage.UsageError):
        Options().parseOptions(args)


def test_make_service_builds_the_tree(tmp_path):
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path)])
    root = makeService(options)
    assert isinstance(root, NeoChatService)
    assert [child.name for child in root] == ["admin", "chat", "cell", "ftp", "file-retention"]
    root.db.close()


def test_twistd_lists_the_plugin_and_its_options():
    listing = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, cwd="/")
    assert "neochat" in listing.stdout
    help_text = subprocess.run([TWISTD, "neochat", "--help"], capture_output=True, text=True, cwd="/")
    for option in ("--listen", "--db", "--data-dir", "--cell", "--relay-ports", "--advertise-ip", "--voice",
                   "--friends-only", "--ftp", "--ftp-passive-ports", "--ftp-cert", "--max-file-size",
                   "--user-quota", "--file-retention-days", "--config", "--metrics", "--log-format"):
        assert option in help_text.stdout


def register_over_tcp(port, deadline):
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with sock:
        sock.sendall(b'{"message_type":"register","username":"u","password":"p"}\n')
        return sock.recv(1000)


def serve_and_register(args, cwd, env=None, twistd=TWISTD):
    """Run twistd in the foreground on a free port (given to ``--listen`` or
    $NEOCHAT_LISTEN), register over TCP, stop it cleanly."""
    port = free_port()
    endpoint = f"tcp:{port}:interface=127.0.0.1"
    args = [arg.replace("{endpoint}", endpoint) for arg in args]
    env = dict(os.environ, NEOCHAT_LISTEN=endpoint, NEOCHAT_CELL="0", NEOCHAT_FTP="0", **(env or {}))
    process = subprocess.Popen([twistd, "--pidfile=", *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        reply = register_over_tcp(port, time.monotonic() + 30)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert reply == b'{"message_type":"register","content":"success"}\n', output
    # twistd shuts down cleanly, then re-raises the SIGTERM it got.
    assert process.returncode in (0, -15) and "Server Shut Down." in output, output
    assert "Traceback" not in output, output


def test_twistd_plugin_serves_on_sqlite(tmp_path):
    serve_and_register(["-n", "neochat", "--listen", "{endpoint}", "--cell", "0", "--ftp", "0",
                        "--data-dir", "state"], tmp_path)
    assert (tmp_path / "state" / "neochat.sqlite").exists()


def test_default_tac_serves_on_sqlite(tmp_path):
    serve_and_register(["-ny", str(ROOT / "tac" / "neochat.tac")], tmp_path)
    assert (tmp_path / "neochat-data" / "neochat.sqlite").exists()


def test_mysql_tac_serves_on_mariadb(tmp_path, db_url):
    if not db_url.startswith("mysql"):
        refused = subprocess.run([TWISTD, "-ny", str(ROOT / "tac" / "neochat-mysql.tac")],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=30,
                                 env=dict(os.environ, NEOCHAT_DB=db_url))
        assert refused.returncode != 0 and "NEOCHAT_DB" in refused.stdout + refused.stderr
        return
    serve_and_register(["-ny", str(ROOT / "tac" / "neochat-mysql.tac")], tmp_path, {"NEOCHAT_DB": db_url})
