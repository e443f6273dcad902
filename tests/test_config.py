"""--config neochat.toml: every option by its own name, the command line
overriding it, errors that name the file and the key; twistd and the .tac
files read it."""

import socket
from pathlib import Path

import pytest
from twisted.python import usage

from neochat.config import Settings
from neochat.config_file import ConfigError
from neochat.tap import Options
from tests.test_wiring import ROOT, serve_and_register
from tests.twistd_process import run_twistd

EXAMPLE = ROOT / "neochat.example.toml"


def parsed(*argv, options_class=Options):
    options = options_class()
    options.parseOptions(list(argv))
    return options


def write(tmp_path, text):
    path = tmp_path / "neochat.toml"
    path.write_text(text)
    return str(path)


def test_the_example_file_is_valid_and_sets_what_it_says():
    settings = parsed("--config", str(EXAMPLE)).settings()
    assert settings.listen[0] == "tcp:7000" and settings.listen[1].startswith("ssl:7443")
    assert settings.data_dir == Path("/var/lib/neochat")
    assert (settings.call_limits.idle_timeout, settings.call_limits.audio.max_datagram) == (60.0, 1400)
    assert settings.ftp.max_file_size == 256 * 2**20


def test_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, 'listen = ["tcp:7100", "tcp:7101"]\ncell = 7\nfriends-only = true\n')
    options = parsed("--config", path, "--listen", "tcp:7200", "--cell=8")
    assert options.settings().listen == ["tcp:7200"]  # all of the file's values go
    assert options["cell"] == 8 and options["friends-only"]


def test_false_flags_and_empty_lists_set_nothing(tmp_path):
    path = write(tmp_path, "friends-only = false\nlisten = []\n")
    options = parsed("--config", path)
    assert not options["friends-only"] and options.settings().listen == ["tcp:7000"]


def test_the_environment_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NEOCHAT_CONFIG", write(tmp_path, "ftp = 2500\n"))
    assert parsed()["ftp"] == 2500


def test_options_added_later_work_without_extra_code(tmp_path):
    class MoreOptions(Options):
        optFlags = Options.optFlags + [["quiet", None, "say less"]]
        optParameters = Options.optParameters + [["colour", None, "red", "a colour"]]

        def __init__(self):
            super().__init__()
            self["limits"] = []

        def opt_limit(self, assignment):
            """NAME=VALUE"""
            self["limits"].append(assignment)

    path = write(tmp_path, 'quiet = true\ncolour = "blue"\n[limit]\nmessages_per_minute = 60\n'
                           '[limit.burst]\nsize = 5\n')
    options = parsed("--config", path, options_class=MoreOptions)
    assert (options["quiet"], options["colour"]) == (1, "blue")
    assert options["limits"] == ["messages_per_minute=60", "burst.size=5"]


@pytest.mark.parametrize("text, message", [
    ("colour = 1\n", "unknown option 'colour'"),
    ("cell = \"many\"\n", "neochat.toml: cell: Parameter type enforcement failed"),
    ("friends-only = \"yes\"\n", "friends-only must be true or false"),
    ("db = [1, 2]\n", "neochat.toml: db must be a string or a number, not [1, 2]"),
    ("voice = \"sip\"\n", "neochat.toml: voice: "),
    ("ftp-tls-required = true\n", "--ftp-tls-required needs --ftp-cert"),
    ("listen = [\"tcp:1\"\n", "not valid TOML"),
    ("call-limit = [\"nonsense=1\"]\n", "neochat.toml: call-limit: --call-limit nonsense=1"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(usage.UsageError) as raised:
        parsed("--config", write(tmp_path, text))
    assert message in str(raised.value)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parsed("--config", str(tmp_path / "absent.toml"))


def test_twistd_serves_from_a_config_file(tmp_path):
    (tmp_path / "neochat.toml").write_text('data-dir = "from-config"\ncell = 0\nftp = 0\n')
    serve_and_register(["-n", "neochat", "--config", "neochat.toml", "--listen", "{endpoint}"], tmp_path)
    assert (tmp_path / "from-config" / "neochat.sqlite").exists()


def test_a_tac_file_reads_the_config_file(tmp_path):
    (tmp_path / "neochat.toml").write_text('data-dir = "from-config"\n')
    serve_and_register(["-ny", str(ROOT / "tac" / "neochat.tac")], tmp_path,
                       {"NEOCHAT_CONFIG": str(tmp_path / "neochat.toml")})
    assert (tmp_path / "from-config" / "neochat.sqlite").exists()


def test_a_bad_config_file_stops_twistd_with_one_line(tmp_path):
    (tmp_path / "neochat.toml").write_text("colour = 1\n")
    result = run_twistd(["--config", "neochat.toml"], tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "twistd neochat: neochat.toml: unknown option 'colour' (twistd neochat --help lists them)"]


@pytest.mark.parametrize("listen, port", [
    ("tcp:7000", "7000"),
    ("tcp:port=7001:interface=127.0.0.1", "7001"),
    ("ssl:7002:privateKey=key.pem:certKey=cert.pem", "7002"),
    ("unix:/run/neochat/chat.sock", "run_neochat_chat.sock"),
])
def test_a_node_without_an_id_is_named_after_its_host_and_first_port(listen, port):
    settings = Settings(listen=[listen])
    assert settings.node_name() == f"{socket.gethostname()}-{port}"
    assert Settings(listen=[listen], node_id="n1").node_name() == "n1"
