"""Installs that work: a fresh virtualenv with ``pip install -e '.[mysql]'``
(the README's MariaDB steps) or ``pip install .`` has a ``twistd`` that finds
the ``neochat`` plugin and serves, and a ``neochatctl``.  Slow (a real pip
install per test), but always run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_wiring import serve_and_register

ROOT = Path(__file__).resolve().parents[1]


def fresh_venv(directory):
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=300)
    return directory / "bin"


def pip_install(bin_dir, *args):
    result = subprocess.run([str(bin_dir / "pip"), "install", "-q", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr


def serve(bin_dir, cwd, env):
    """The installed twistd, started from a directory outside the checkout."""
    serve_and_register(["-n", "neochat", "--listen", "{endpoint}", "--cell", "0", "--ftp", "0",
                        "--data-dir", "data"], cwd, env, twistd=str(bin_dir / "twistd"))


def test_the_readme_mariadb_install_serves(tmp_path, db_url):
    if not db_url.startswith("mysql"):
        pytest.skip("the MariaDB steps")
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "-e", ".[mysql]")  # exactly as the README says
    serve(bin_dir, tmp_path, {"NEOCHAT_DB": db_url})
    listing = subprocess.run([str(bin_dir / "neochatctl"), "--data-dir", str(tmp_path / "data"), "users"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             env=dict(os.environ, NEOCHAT_DB=db_url))
    assert listing.returncode == 0 and "u" in listing.stdout.split(), listing.stdout + listing.stderr


def test_a_plain_install_serves_outside_the_checkout(tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, ".")
    serve(bin_dir, tmp_path, {})
    assert (tmp_path / "data" / "neochat.sqlite").exists()
