"""Log output, text or (``--log-format json``) JSON lines, written in batches.

twistd's own observer writes each event at once, one system call a line; a
login storm spent 8.5 % of the reactor in its audit lines.  Here the lines
of the reactor thread wait in a buffer written in one go WRITE_DELAY seconds
after its first line, or at once when it holds BATCH_BYTES, when a warning
or worse comes (say it now), and when the reactor stops (nothing is lost on
a clean stop).  Before the reactor runs, after it stops, and from other
threads, a line is written at once, as twistd does.

JSON lines are twisted.logger's jsonFileLogObserver lines: each event with
its fields (``audit`` names the events an administrator wants: login,
login_failed, logout, registration, kick, ban, file_upload, file_download)."""

import signal
import sys

from twisted.logger import ILogObserver, LogLevel, eventAsJSON, formatEventAsClassicLogText
from twisted.python import threadable
from twisted.python.logfile import LogFile
from zope.interface import implementer

FORMATS = ("text", "json")
WRITE_DELAY = 0.1  # seconds a line may wait in the buffer
BATCH_BYTES = 64 * 1024  # a buffer this large is written at once

# How each format turns an event into its line (None or "": no line), as
# twistd's textFileLogObserver and jsonFileLogObserver do.
LINES = {
    "text": formatEventAsClassicLogText,
    "json": lambda event: f"\x1e{eventAsJSON(event)}\n",
}

_format, _path = "text", None  # what use() chose for observer(); path None: standard output


def log_format(text):
    if text not in FORMATS:
        raise ValueError(text)
    return text


def use(log_format, twistd_options):
    """Make twistd log through observer(), in ``log_format``, where it would
    have logged: its --logfile, else standard output with -n, else
    twistd.log.  Text to --syslog stays twistd's."""
    global _format, _path
    if log_format == "text" and twistd_options.get("syslog"):
        return
    logfile = twistd_options.get("logfile")
    if logfile == "-" or (not logfile and twistd_options.get("nodaemon")):
        _path = None
    else:
        _path = logfile or "twistd.log"
    _format = log_format
    twistd_options["logger"] = f"{__name__}.observer"


def observer():
    """The twistd --logger factory that use() names."""
    return batched(_format, _path)


def batched(log_format, path=None):
    """A BatchedLog of ``log_format`` lines to ``path`` (a LogFile, rotated
    on SIGUSR1 as twistd's is) or standard output."""
    from twisted.internet import reactor

    out = sys.stdout
    if path is not None:
        out = LogFile.fromFullPath(path)
        if not signal.getsignal(signal.SIGUSR1):
            signal.signal(signal.SIGUSR1, lambda number, frame: reactor.callFromThread(out.rotate))
    return BatchedLog(out, LINES[log_format], reactor)


@implementer(ILogObserver)
class BatchedLog:
    """Writes ``line(event)`` to the file ``out`` in batches (see the module)."""

    def __init__(self, out, line, reactor):
        self.out = out
        self.line = line
        self.reactor = reactor
        self.lines = []
        self.size = 0  # characters in self.lines
        self.timer = None
        reactor.addSystemEventTrigger("after", "shutdown", self.flush)

    def __call__(self, event):
        text = self.line(event)
        if not text:
            return
        if not threadable.isInIOThread():
            self.write(text)  # the reactor has not run yet, or another thread: not this one's buffer
            return
        self.lines.append(text)
        self.size += len(text)
        urgent = event.get("log_level", LogLevel.info) >= LogLevel.warn
        if urgent or self.size >= BATCH_BYTES or not self.reactor.running:  # stopped: no timer would fire
            self.flush()
        elif self.timer is None:
            self.timer = self.reactor.callLater(WRITE_DELAY, self.flush)

    def flush(self):
        """Write what waits, now."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        lines, self.lines, self.size = self.lines, [], 0
        if lines:
            self.write("".join(lines))

    def write(self, text):
        self.out.write(text)
        self.out.flush()
