"""One connection's limits (``services/limits.py``), kept the same way for a
TCP connection of the message port (``services/chat.py``) and a WebSocket
of the web gateway (``web/gateway.py``).

The connection tells the keeper how many bytes arrived and hands it its
dialect; the keeper watches the dialect (``Dialect.watch``) and, when a
limit is broken, calls the connection's ``refuse(stat, reason)``: one error
in the connection's form, then the close.  Until the session logs in, the
connection has ``login_timeout`` seconds, ``bytes_before_login`` bytes and
small frames; after, ``idle_timeout`` seconds between bytes and the full
frame sizes.  The message and byte rates apply throughout.  Each limit that
trips is counted and logged under its name (``audit.limit_tripped``).
"""

from twisted.protocols.policies import TimeoutMixin

from neochat.chat import audit
from neochat.services.limits import Pacer, set_frame_limits


class LimitKeeper(TimeoutMixin):
    def __init__(self, limits, clock, refuse, address):
        self.limits = limits
        self.callLater = clock.callLater  # for TimeoutMixin
        self._refuse = refuse  # the connection's: (stat, reason) -> one error, then close
        self.address = address  # the client's, for the log of a limit tripped
        self.dialect = None
        self.pacer = None
        if limits.messages_per_second or limits.bytes_per_second:
            self.pacer = Pacer(limits, clock, address)
        self.logged_in = False
        self.done = False  # refused or closed: nothing more is limited
        self._before_login = 0  # bytes received before login
        self.setTimeout(limits.login_timeout or None)

    def received(self, size):
        """``size`` bytes arrived; False when they broke a limit (the
        connection is refused and should not read them)."""
        if self.done:
            return False
        self._notice_login()  # the login reply may precede the end of the login request
        if self.logged_in:
            self.resetTimeout()
        else:
            self._before_login += size
            if self.limits.bytes_before_login and self._before_login > self.limits.bytes_before_login:
                self.refuse(413, "too much data before login", "bytes_before_login")
                return False
        if self.pacer is not None:
            self.pacer.received(size)
        return True

    def attach(self, dialect):
        """The connection's dialect, whose decoder and requests are limited from now on."""
        self.dialect = dialect
        set_frame_limits(dialect.decoder, self.limits, logged_in=False)
        if self.pacer is not None:
            self.pacer.wake = dialect.resume
        dialect.watch(self)

    # -- the dialect's watcher ---------------------------------------------

    def ready(self):
        return self.pacer is None or self.pacer.ready()

    def took(self, item):
        if self.pacer is not None:
            self.pacer.took(item)

    def pumped(self):
        self._notice_login()

    def _notice_login(self):
        """Once the session has logged in, the after-login limits apply."""
        if self.logged_in or self.done or self.dialect is None or not self.dialect.session.logged_in:
            return
        self.logged_in = True
        set_frame_limits(self.dialect.decoder, self.limits, logged_in=True)
        self.setTimeout(self.limits.idle_timeout or None)

    # -- deadlines and refusals ----------------------------------------------

    def timeoutConnection(self):
        was_logged_in = self.logged_in
        self._notice_login()
        if self.logged_in and not was_logged_in:
            return  # logged in since the last byte: the idle clock runs now
        if self.logged_in:
            self.refuse(408, "idle timeout", "idle_timeout")
        else:
            self.refuse(408, "login timeout", "login_timeout")

    def refuse(self, stat, reason, limit=None):
        """Stop limiting and let the connection answer ``stat`` and close;
        ``limit``: the name of the limit that refused it."""
        if self.done:
            return
        if limit is not None:
            account = self.dialect.session.account if self.dialect is not None else None
            audit.limit_tripped(limit, self.address, account)
        self.stop()
        self._refuse(stat, reason)

    def stop(self):
        """The connection is refused or gone: its last requests run at once."""
        self.done = True
        self.setTimeout(None)
        if self.pacer is not None:
            self.pacer.stop()
