"""neochatctl check: each kind of mistake is found and said exactly, with
exit status 4; a sound setup passes with 0."""

import contextlib
import io
import json
import socket
import sqlite3

import pytest

from neochat.admin.cli import CHECK_FAILED, OK, main
from neochat.store.schema import latest_version
from tests.test_tls import self_signed
from tests.twistd_process import free_port


def check(tmp_path, config, *extra):
    """(exit status, {check: [messages of failed checks]}) for a config file."""
    path = tmp_path / "neochat.toml"
    path.write_text(config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(["--config", str(path), "--json", "check", *extra])
    failed = {}
    for result in json.loads(out.getvalue()):
        if not result["ok"]:
            failed.setdefault(result["check"], []).append(result["message"])
    return status, failed


def sound(tmp_path, db_url=None):
    """A config with free ports, a writable data dir and (by default) SQLite."""
    lines = [f'listen = ["tcp:{free_port()}:interface=127.0.0.1"]', f"ftp = {free_port()}",
             'ftp-interface = "127.0.0.1"', f"cell = {free_port()}", 'cell-interface = "127.0.0.1"',
             f'data-dir = "{tmp_path / "data"}"']
    if db_url:
        lines.append(f'db = "{db_url}"')
    return "\n".join(lines) + "\n"


def test_a_sound_setup_passes(tmp_path, db_url):
    assert check(tmp_path, sound(tmp_path, db_url)) == (OK, {})


def test_a_bad_config_file_is_named(tmp_path):
    status, failed = check(tmp_path, sound(tmp_path) + "colour = 1\n")
    assert status == CHECK_FAILED
    assert failed == {"config": [f"{tmp_path / 'neochat.toml'}: unknown option 'colour'"
                                 " (twistd neochat --help lists them)"]}


def test_an_unreachable_database(tmp_path):
    pytest.importorskip("MySQLdb")
    url = f"mysql://neochat:pw@127.0.0.1:{free_port()}/neochat"
    status, failed = check(tmp_path, sound(tmp_path, url))
    assert status == CHECK_FAILED and list(failed) == ["database"]
    assert failed["database"][0].startswith(f"mysql://neochat@127.0.0.1:{url.split(':')[3].split('/')[0]}/neochat"
                                            " unreachable")


def test_a_database_newer_than_the_code(tmp_path):
    path = tmp_path / "new.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (?)", (latest_version() + 1,))
    status, failed = check(tmp_path, sound(tmp_path, f"sqlite:{path}"))
    assert status == CHECK_FAILED
    assert failed == {"database": [f"sqlite:{path} has schema version {latest_version() + 1}, newer than this"
                                   f" NeoChat ({latest_version()}): upgrade NeoChat"]}


def test_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = sound(tmp_path).replace("listen = [", f'listen = ["tcp:{port}:interface=127.0.0.1", ')
        status, failed = check(tmp_path, config)
    assert status == CHECK_FAILED
    assert failed == {"ports": [f"--listen tcp:{port}:interface=127.0.0.1: cannot bind 127.0.0.1:{port}:"
                                " Address already in use"]}


def test_a_missing_certificate(tmp_path):
    config = sound(tmp_path) + f'ftp-cert = "{tmp_path}/absent.pem"\n'
    status, failed = check(tmp_path, config)
    assert status == CHECK_FAILED
    assert failed == {"certificates": [f"--ftp-cert: cannot read {tmp_path}/absent.pem"]}


def test_a_certificate_that_does_not_match_its_key(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, cert = self_signed(tmp_path / "a")
    key, _ = self_signed(tmp_path / "b")
    config = sound(tmp_path).replace(
        "listen = [", f'listen = ["ssl:{free_port()}:interface=127.0.0.1:privateKey={key}:certKey={cert}", ')
    status, failed = check(tmp_path, config)
    assert status == CHECK_FAILED and len(failed["certificates"]) == 1
    assert f"{cert} and {key} do not go together" in failed["certificates"][0]
    assert "KEY_VALUES_MISMATCH" in failed["certificates"][0]


def test_a_data_dir_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    config = sound(tmp_path).replace(f'data-dir = "{tmp_path / "data"}"', f'data-dir = "{tmp_path / "file" / "data"}"')
    status, failed = check(tmp_path, config)
    assert status == CHECK_FAILED
    assert failed["data dir"] == [f"{tmp_path / 'file' / 'data'} is not writable: Not a directory"]
