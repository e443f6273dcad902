"""``--log-format json``: JSON lines (twisted.logger's jsonFileLogObserver),
each event with its fields (``audit`` names the events an administrator
wants: login, login_failed, logout, registration, kick, ban, file_upload,
file_download), instead of twistd's text lines."""

import sys

from twisted.logger import jsonFileLogObserver
from twisted.python.logfile import LogFile

FORMATS = ("text", "json")
_path = None  # where the JSON lines go; None: standard output


def log_format(text):
    if text not in FORMATS:
        raise ValueError(text)
    return text


def use_json(twistd_options):
    """Make twistd log JSON lines where it would have logged text: its
    --logfile, else standard output with -n, else twistd.log."""
    global _path
    logfile = twistd_options.get("logfile")
    if logfile == "-" or (not logfile and twistd_options.get("nodaemon")):
        _path = None
    else:
        _path = logfile or "twistd.log"
    twistd_options["logger"] = f"{__name__}.json_observer"


def json_observer():
    """The twistd --logger factory that use_json names."""
    return jsonFileLogObserver(LogFile.fromFullPath(_path) if _path else sys.stdout)
