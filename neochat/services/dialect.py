"""What both dialects share: one connection's commands run one at a time, in
the order they arrived, and every failure becomes an error reply in the
dialect the request came in.  The connection survives bad input."""

from twisted.internet import defer
from twisted.logger import Logger

from neochat.chat.errors import BadRequest, ChatError
from neochat.store.database import DatabaseUnavailable

log = Logger()

PAUSE_ABOVE = 1024 * 1024  # buffered bytes before we stop reading the socket


class Rejected(Exception):
    """An item refused before it reached a handler; the error reply still
    names the request's message_type where the item had one.  With
    ``close`` the stream cannot be kept in step (a payload too long to
    skip): the connection closes after the error."""

    def __init__(self, request, error, close=False):
        super().__init__(error.reason)
        self.request, self.error, self.close = request, error, close


class Dialect:
    """Subclasses decode items, name the handler for each, and encode replies.

    ``cmd_<name>(request)`` handlers return a reply, None (nothing to send),
    or a Deferred of either, and raise ``ChatError`` for a failure.
    """

    def __init__(self, transport, chat, peer_host):
        self.transport = transport
        self.chat = chat
        self.session = chat.new_session(self, peer_host)
        self._busy = False
        self._paused = False
        self._watcher = UNWATCHED
        self._ended = False  # closed after a Rejected(close=True): nothing more runs
        self._input_ended = False

    # -- subclass interface ----------------------------------------------

    def feed(self, data):
        raise NotImplementedError

    def next_item(self):
        """The next decoded item, or None when more bytes are needed."""
        raise NotImplementedError

    def buffered(self):
        raise NotImplementedError

    def handle_item(self, item):
        """Return a (handler, request) pair; raise Rejected (or ChatError) to refuse it."""
        raise NotImplementedError

    def encode_reply(self, request, reply):
        raise NotImplementedError

    def encode_error(self, request, error):
        raise NotImplementedError

    def encode_event(self, event):
        raise NotImplementedError

    # -- the session's sink ----------------------------------------------

    def send_event(self, event):
        self.transport.write(self.encode_event(event))

    def close(self):
        self.transport.loseConnection()

    # -- the pump --------------------------------------------------------

    def data_received(self, data):
        self.feed(data)
        self._pump()

    def input_ended(self):
        """The client half-closed its side: every request that arrived in full
        still runs and is answered, then the connection closes."""
        if not self._input_ended:
            self._input_ended = True
            self.end_of_input()
            self._pump()

    def end_of_input(self):
        """Subclass hook: the items the stream's end completes."""

    def connection_lost(self):
        self.chat.disconnected(self.session)
        self._pump()  # requests that arrived whole still run

    def watch(self, watcher):
        """The connection's limits: ``watcher.ready()`` may hold requests back
        (``resume()`` runs them later), ``took(item)`` counts each one, and
        ``pumped()`` follows each run of requests."""
        self._watcher = watcher

    def resume(self):
        self._pump()

    def _pump(self):
        while not self._busy and not self._ended and self._watcher.ready():
            item = self.next_item()
            if item is None:
                if self._input_ended:  # all answered: the account goes offline now, not at the close
                    self.chat.disconnected(self.session)
                    self.close()
                break
            self._watcher.took(item)
            self._dispatch(item)
        self._flow_control()
        self._watcher.pumped()

    def _flow_control(self):
        if not self._paused and self.buffered() > PAUSE_ABOVE:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and self.buffered() <= PAUSE_ABOVE and not self._busy:
            self._paused = False
            self.transport.resumeProducing()

    def _dispatch(self, item):
        request = None
        try:
            handler, request = self.handle_item(item)
            result = handler(request)
        except Rejected as rejected:
            self._write_rejected(rejected)
            return
        except ChatError as error:
            self._write_error(request, error)
            return
        except Exception:
            log.failure("handling {item!r}", item=item)
            self._write_error(request, ChatError("internal error", stat=500))
            return
        if not isinstance(result, defer.Deferred):
            self._write_reply(request, result)
            return
        self._busy = True
        result.addCallbacks(
            lambda reply: self._write_reply(request, reply),
            lambda failure: self._write_failure(request, failure),
        )
        result.addBoth(self._done)

    def _done(self, _):
        self._busy = False
        self._pump()

    def _write_reply(self, request, reply):
        if reply is not None and not self.session.closed:
            self.transport.write(self.encode_reply(request, reply))

    def _write_rejected(self, rejected):
        self._write_error(rejected.request, rejected.error)
        if rejected.close:
            self._ended = True
            self.close()

    def _write_failure(self, request, failure):
        if failure.check(Rejected):
            self._write_rejected(failure.value)
        elif failure.check(ChatError):
            self._write_error(request, failure.value)
        elif failure.check(DatabaseUnavailable):  # Database.run logged it, once per outage
            self._write_error(request, ChatError("database unavailable, retry", stat=503))
        else:
            log.failure("handling {request!r}", failure, request=request)
            self._write_error(request, ChatError("internal error", stat=500))

    def _write_error(self, request, error):
        if not self.session.closed:
            self.transport.write(self.encode_error(request, error))


class Unwatched:
    """No limits: every request runs at once."""

    def ready(self):
        return True

    def took(self, item):
        pass

    def pumped(self):
        pass


UNWATCHED = Unwatched()


def field(request, name, kind=str, default=None, required=True):
    """``request[name]``, checked: missing or wrongly typed fields are a BadRequest."""
    if name not in request or request[name] is None:
        if required:
            raise BadRequest(f"missing field: {name}")
        return default
    value = request[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"wrong type for field: {name}")
    return value
