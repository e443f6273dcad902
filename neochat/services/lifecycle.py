"""Start and stop as a supervisor sees them: a failed start is one clear
log line and a non-zero exit status; a stop is graceful unless a second
SIGTERM (or SIGINT) or the stop timeout forces it."""

import atexit
import os
import signal
import socket
import sqlite3
import sys

from twisted.internet.defer import FirstError
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from neochat.store.database import DatabaseUnavailable
from neochat.store.schema import SchemaTooNew

log = Logger()

START_FAILED = 1  # exit status of a start that failed
FORCED = 2  # exit status of a stop that had to be forced
STOP_TIMEOUT = 30.0  # seconds a graceful stop may take


class StartFailed(Exception):
    """One part of the server could not start: ``what`` failed, ``hint`` says
    what to do about it."""

    def __init__(self, what, hint):
        super().__init__(f"{what}; {hint}")


# What to change when a service cannot start, by service name.
OPTIONS = {"admin": "--data-dir", "metrics": "--metrics", "chat": "--listen", "cell": "--cell, --cell-interface",
           "ftp": "--ftp, --ftp-interface"}


def describe(failure, database, service=None):
    """One line for a failed start of ``service`` (a child's name, or None
    for the database or the whole): what failed and what to do; None for an
    unexpected error (a bug: its traceback is what helps)."""
    error = unwrap(failure).value
    if isinstance(error, DatabaseUnavailable) and error.__cause__ is not None:
        error = error.__cause__  # the retries ran out: say what the driver said
    option = f" ({OPTIONS[service]})" if service in OPTIONS else ""
    if isinstance(error, StartFailed):
        return str(error)
    if isinstance(error, CannotListenError) and isinstance(error.port, (bytes, str)):  # the admin socket
        path = os.fsdecode(error.port)
        return (f"cannot listen on {path}: {error.socketError}; another NeoChat runs with this data dir:"
                " stop it or use another --data-dir")
    if isinstance(error, CannotListenError):
        where = f"{error.interface or '*'}:{error.port}"
        return (f"cannot listen on {where}: {error.socketError}; stop whatever holds the port"
                f" or choose another one{option}")
    if isinstance(error, SchemaTooNew):
        return str(error)
    if isinstance(error, ModuleNotFoundError) and error.name == "MySQLdb":
        return "the MySQL driver is not installed; pip install 'neochat[mysql]' (needs libmariadb-dev)"
    if _is_database_error(error):
        return (f"database {database} unusable: {_message(error)}; check that it runs and that"
                " --db (or $NEOCHAT_DB) names it with the right user and password")
    if isinstance(error, (OSError, ValueError)):  # files, addresses, URLs
        if service is None:
            return _message(error)
        return f"{service} server: {_message(error)}; check {OPTIONS.get(service, 'its options')}"
    return None


def unwrap(failure):
    while failure.check(FirstError):
        failure = failure.value.subFailure
    return failure


def _is_database_error(error):
    if isinstance(error, sqlite3.Error):
        return True
    return type(error).__module__.startswith(("MySQLdb", "_mysql"))


def _message(error):
    args = getattr(error, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # MySQLdb: (code, text)
        return f"{args[1]} (error {args[0]})"
    return str(error) or type(error).__name__


def notify_systemd(state):
    """sd_notify(3) for Type=notify units: "READY=1", "STOPPING=1"; nothing
    without $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("ascii"))
    except OSError as error:
        log.warn("cannot tell systemd {state}: {error}", state=state, error=error)


def exit_at_the_end(status):
    """Make the process exit with ``status`` once twistd has shut down
    cleanly (twistd itself always exits 0 after its reactor stops)."""

    def leave():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(leave)


def force_on_second_signal(force):
    """While a stop is under way, SIGTERM or SIGINT again calls ``force``."""

    def again(signum, frame):
        force(f"signal {signal.Signals(signum).name} during the stop")

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, again)


def force_exit(reason):
    """Leave now, without waiting for what is still stopping."""
    log.critical("forced stop ({reason}): exiting without finishing the graceful stop", reason=reason)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(FORCED)
