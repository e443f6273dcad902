"""``neochatctl check``: what would stop the server from starting, found
before it starts.  Each check gives {check, ok, message}; the message says
exactly what is wrong and where."""

import os
import re
import socket
import ssl
import tempfile
from pathlib import Path

from neochat.admin import client
from neochat.services.admin import socket_path
from neochat.store import dialect_from_url
from neochat.store.admin import connect
from neochat.store.schema import latest_version

CONFIG, DATA_DIR, DATABASE, PORTS, CERTIFICATES = "config", "data dir", "database", "ports", "certificates"


def problem(check, message):
    return {"check": check, "ok": False, "message": message}


def fine(check, message):
    return {"check": check, "ok": True, "message": message}


def run_checks(settings):
    """Every check, in order; the configuration parsed already (settings)."""
    running = client.server_running(socket_path(settings))
    results = [fine(CONFIG, "the options and the config file are valid"), data_dir(settings.data_dir),
               database(settings)]
    results += ports(settings) if not running else [fine(PORTS, "held by the running server")]
    results += certificates(settings)
    return results


def data_dir(directory):
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as error:
        return problem(DATA_DIR, f"{directory} is not writable: {error.strerror}")
    return fine(DATA_DIR, f"{directory} is writable")


def database(settings):
    try:
        dialect = dialect_from_url(settings.database_url(), settings.data_dir)
    except ValueError as error:
        return problem(DATABASE, f"bad database URL: {error}")
    where = dialect.describe()
    if dialect.name == "sqlite" and not Path(dialect.path).exists():
        return fine(DATABASE, f"{where} does not exist yet: the server creates it at start")
    try:
        version = _schema_version(dialect)
    except ImportError:
        return problem(DATABASE, f"{where}: the MySQL driver is missing: pip install 'neochat[mysql]'")
    except Exception as error:
        return problem(DATABASE, f"{where} unreachable: {error}")
    newest = latest_version()
    if version > newest:
        return problem(DATABASE, f"{where} has schema version {version}, newer than this NeoChat ({newest}):"
                                 " upgrade NeoChat")
    if version < newest:
        return fine(DATABASE, f"{where} has schema version {version}: the server upgrades it to {newest} at start")
    return fine(DATABASE, f"{where} is reachable, schema version {version}")


def _schema_version(dialect):
    connection = connect(dialect)
    try:
        cursor = connection.cursor()
        try:
            cursor.execute("SELECT MAX(version) FROM schema_version")
        except Exception as error:
            if "schema_version" in str(error):
                return 0  # an empty database: the server creates the schema
            raise
        return cursor.fetchone()[0] or 0
    finally:
        connection.close()


def endpoint_fields(description):
    """(type, positional arguments, keyword arguments) of an endpoint string."""
    parts = [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", description)]
    positional = [part for part in parts[1:] if "=" not in part]
    keywords = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    return parts[0], positional, keywords


def ports(settings):
    """Every fixed port the server binds: each --listen, FTP, the cell server."""
    wanted = []
    for description in settings.listen:
        kind, positional, keywords = endpoint_fields(description)
        if kind in ("tcp", "ssl") and (positional or "port" in keywords):
            port = keywords.get("port") or positional[0]
            wanted.append((f"--listen {description}", socket.SOCK_STREAM, keywords.get("interface", ""), port))
    wanted.append(("--ftp", socket.SOCK_STREAM, settings.ftp.interface, settings.ftp.port))
    wanted.append(("--cell (UDP)", socket.SOCK_DGRAM, settings.cell_interface, settings.cell_port))
    results = []
    for name, kind, interface, port in wanted:
        if int(port) == 0:
            continue
        try:
            with socket.socket(socket.AF_INET6 if ":" in interface else socket.AF_INET, kind) as sock:
                sock.bind((interface, int(port)))
        except OSError as error:
            results.append(problem(PORTS, f"{name}: cannot bind {interface or '*'}:{port}: {error.strerror}"))
        else:
            results.append(fine(PORTS, f"{name}: {interface or '*'}:{port} is free"))
    return results


def certificates(settings):
    """Every certificate the server loads is readable and matches its key."""
    pairs = []
    for description in settings.listen:
        kind, _, keywords = endpoint_fields(description)
        if kind == "ssl":
            key = keywords.get("privateKey")
            pairs.append((f"--listen {description}", keywords.get("certKey", key), key))
    if settings.ftp.certfile:
        pairs.append(("--ftp-cert", settings.ftp.certfile, settings.ftp.keyfile or settings.ftp.certfile))
    results = []
    for name, certificate, key in pairs:
        missing = [path for path in dict.fromkeys((certificate, key)) if not path or not os.access(path, os.R_OK)]
        if missing:
            results.append(problem(CERTIFICATES, f"{name}: cannot read {', '.join(str(m) for m in missing)}"))
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key)
        except ssl.SSLError as error:
            results.append(problem(CERTIFICATES, f"{name}: {certificate} and {key} do not go together:"
                                                 f" {error.reason or error}"))
        else:
            results.append(fine(CERTIFICATES, f"{name}: {certificate} matches its key"))
    return results
