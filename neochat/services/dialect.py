"""What both dialects share: one connection's commands run one at a time, in
the order they arrived, and every failure becomes an error reply in the
dialect the request came in.  The connection survives bad input.

Flow control both ways: the dialect stops reading a connection that has
more than PAUSE_ABOVE bytes of requests waiting, and it is the push
producer of its transport, so it hears when the client does not read what
is written to it (more than WRITE_BUFFER bytes waiting): the session then
stops writing live events (neochat/chat/session.py) and requests wait too.
"""

from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from neochat.chat import audit
from neochat.chat.errors import BadRequest, ChatError
from neochat.services.voice import stream_clip
from neochat.store.database import DatabaseUnavailable

log = Logger()

PAUSE_ABOVE = 1024 * 1024  # buffered bytes before we stop reading the socket
MAX_PIPELINE = 100  # message sends of one connection in flight at once
WRITE_BUFFER = 256 * 1024  # bytes written but not yet sent before the client counts as behind


class Rejected(Exception):
    """An item refused before it reached a handler; the error reply still
    names the request's message_type where the item had one.  With
    ``close`` the stream cannot be kept in step (a payload too long to
    skip): the connection closes after the error."""

    def __init__(self, request, error, close=False):
        super().__init__(error.reason)
        self.request, self.error, self.close = request, error, close


@implementer(IPushProducer)
class Dialect:
    """Subclasses decode items, name the handler for each, and encode replies.

    ``cmd_<name>(request)`` handlers return a reply, None (nothing to send),
    or a Deferred of either, and raise ``ChatError`` for a failure.
    """

    def __init__(self, transport, chat, peer_host):
        self.transport = transport
        self.chat = chat
        self.session = chat.new_session(self, peer_host)
        self._in_flight = deque()  # _Slot per request started, in arrival order
        self._next = None  # the next request, decoded, waiting its turn
        self._paused = False  # reading
        self._behind = False  # writing
        self._lent = False  # a file or clip is being written: nothing else is
        self._watcher = UNWATCHED
        self._ended = False  # closed after a Rejected(close=True): nothing more runs
        self._input_ended = False
        self._starved = False  # the last pump stopped for want of bytes
        if hasattr(transport, "bufferSize"):  # TCP; TLS keeps its own
            transport.bufferSize = WRITE_BUFFER
        transport.registerProducer(self, True)

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

    def clip_framing(self, event):
        """How a voice clip notice goes out: (head, tail, encoder of the clip's
        file or None), the clip's bytes between head and tail."""
        raise NotImplementedError

    # -- the session's sink ----------------------------------------------

    @property
    def largest_message(self):
        """The most bytes one event may take on this connection (a
        WebSocket's message size), or None: no bound."""
        return getattr(self.transport, "largest_message", None)

    def send_event(self, event):
        """Encoded once per dialect, however many sessions it goes to; a
        voice clip streamed from its file."""
        clip = getattr(event, "clip", None)
        if clip is not None:
            stream_clip(self, clip, *self.clip_framing(event)).addErrback(
                lambda failure: log.failure("sending a voice clip", failure))
            return
        data = event.wire.get(type(self))
        if data is None:
            data = event.wire[type(self)] = self.encode_event(event)
        self.transport.write(data)

    def close(self):
        self.transport.loseConnection()

    def frame_refused(self, limit):
        """A request over its size ``limit`` was refused; before login every
        frame is held to ``frame_before_login`` instead."""
        session = self.session
        audit.limit_tripped(limit if session.logged_in else "frame_before_login", session.peer_host,
                            session.account)

    def abort(self):
        self.transport.abortConnection()

    # -- the transport's producer ----------------------------------------------

    def pauseProducing(self):
        """The client is not reading what we write."""
        self._behind = True
        self.session.pause()
        self._flow_control()

    def resumeProducing(self):
        self._behind = False
        self.session.resume()
        self._flow_control()
        self._pump()

    def stopProducing(self):
        pass  # connection_lost follows

    def lend_transport(self):
        """Somebody else (a file being sent) produces for the transport
        until ``take_back_transport``; live events, replies and requests wait meanwhile."""
        self._lent = True
        self.session.hold()
        self.transport.unregisterProducer()

    def take_back_transport(self):
        self.transport.unregisterProducer()  # a sender cut off short leaves itself there
        self.transport.registerProducer(self, True)
        self._lent = False
        self.session.release()
        self._answer()
        self._pump()

    # -- the pump --------------------------------------------------------

    @property
    def _busy(self):
        """Requests are running or waiting their turn: we are the slow side."""
        return bool(self._in_flight) or self._next is not None

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
        self._behind = False  # nobody reads the replies now, but requests still run
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
        self._starved = False
        # A client that does not read its replies gets no more of them.
        while not self._behind and not self._ended and not self._lent:
            if self._next is None:
                if not self._watcher.ready():
                    break
                item = self.next_item()
                if item is None:
                    self._starved = not self._input_ended
                    if self._input_ended and not self._in_flight:
                        # All answered: the account goes offline now, not at the close.
                        self.chat.disconnected(self.session)
                        self.close()
                    break
                self._watcher.took(item)
                self._next = self._classify(item)
            if self._in_flight and not self._may_overlap(self._next[3]):
                break
            handler, request, error, pipelined = self._next
            self._next = None
            self._start(handler, request, error, pipelined)
        self._flow_control()
        self._watcher.pumped()

    def _may_overlap(self, pipelined):
        """Message sends overlap with the sends before them: up to
        MAX_PIPELINE of a connection go to one group commit."""
        return self._in_flight[-1].pipelined and pipelined and len(self._in_flight) < MAX_PIPELINE

    def _flow_control(self):
        full = self.buffered() > PAUSE_ABOVE or self._behind
        if not self._paused and full:
            self._paused = True
            self.transport.pauseProducing()
        elif self._paused and not full:
            self._paused = False
            self.transport.resumeProducing()

    def _classify(self, item):
        """(handler, request, None, pipelined), or (None, request, the error
        to answer: a ChatError or a Rejected, False)."""
        request = None
        try:
            handler, request = self.handle_item(item)
            when = getattr(handler, "pipelined", None)
            return handler, request, None, bool(when and when(request))
        except Rejected as rejected:
            return None, rejected.request, rejected, False
        except ChatError as error:
            return None, request, error, False

    def _start(self, handler, request, error, pipelined):
        slot = _Slot(request, pipelined)
        self._in_flight.append(slot)
        if error is None:
            try:
                result = handler(request)
            except ChatError as refused:
                # Without its traceback, which would hold the request (a
                # clip's body) in a reference cycle until the next collection.
                slot.finish(refused.with_traceback(None))
            except Exception:
                slot.finish(Failure())
            else:
                if isinstance(result, defer.Deferred):
                    result.addBoth(self._done, slot)
                    return
                slot.finish(result)
        else:
            slot.finish(error)
        self._answer()

    def _done(self, outcome, slot):
        """``outcome``: the reply or a Failure."""
        slot.finish(outcome)
        self._answer()
        if self._starved:  # the last pump read every whole request: none can start before more bytes
            self._watcher.pumped()
        else:
            self._pump()

    def _answer(self):
        """Replies go out in the order the requests came (none while the
        connection is lent: they wait for the file or clip)."""
        while self._in_flight and self._in_flight[0].finished and not self._lent:
            slot = self._in_flight.popleft()
            if isinstance(slot.outcome, Failure):
                self._write_failure(slot.request, slot.outcome)
                # Its traceback holds the request (a clip's body) in a
                # reference cycle until the next collection: let go now.
                slot.outcome.cleanFailure()
                slot.outcome.value.__traceback__ = slot.outcome.value.__context__ = None
            elif isinstance(slot.outcome, Rejected):
                self._write_rejected(slot.outcome)
            elif isinstance(slot.outcome, ChatError):
                self._write_error(slot.request, slot.outcome)
            else:
                self._write_reply(slot.request, slot.outcome)
            slot.request = slot.outcome = None

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


class _Slot:
    """One request's place in the reply order."""

    __slots__ = ("request", "pipelined", "finished", "outcome")

    def __init__(self, request, pipelined):
        self.request = request
        self.pipelined = pipelined
        self.finished = False
        self.outcome = None  # the reply, a ChatError, a Rejected or a Failure

    def finish(self, outcome):
        self.finished, self.outcome = True, outcome


def pipelined(when):
    """Marks a message-send handler whose requests may overlap (see _pump):
    those for which ``when(request)`` is true, that is, those that reach the
    domain's send at once (the domain keeps such sends in order)."""
    def mark(handler):
        handler.pipelined = when
        return handler
    return mark


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
