"""A connection as the chat domain sees it, and its flow control.

The store is the buffer.  A session writes live events to its connection
only while the connection keeps up.  When the connection's transport says it
is behind (``pause``), queued messages (private and group) are no longer
written: they stay in the account's pending queue and are replayed from the
store when it drains (``resume``), through the same path as a login.  Other
events wait in a small bounded queue; presence keeps only its latest state.
A voice clip from this node waits in the voice spool (chat/clips.py, which
bounds it), and the session that lets go of one (written, dropped, or its
connection gone) discards its file; a clip from another node, whose bytes
are in memory, is refused while behind (RecipientNotReading).  A session
behind for longer than the deadline is dropped: it loses nothing stored,
and its next login replays it.
"""

import time
from collections import deque

from neochat.chat import audit
from neochat.chat.errors import ChatError
from neochat.chat.model import ChatMessage, Notice
from neochat.chat.presence import FULL

MAX_QUEUED_EVENTS = 1000  # unstored events waiting while behind or replaying
MAX_QUEUED_BYTES = 1024 * 1024  # of which bytes of voice clips from other nodes
BEHIND_DEADLINE = 60.0  # seconds a connection may stay behind before it is dropped


class RecipientNotReading(ChatError):
    stat = 503

    def __init__(self):
        super().__init__("recipient not reading")


class Session:
    """``sink`` is the dialect side: ``send_event(event)`` writes one event
    in the connection's dialect, ``close()`` drops the connection after what
    is written, ``abort()`` drops it at once.
    """

    def __init__(self, chat, sink, peer_host):
        self.chat = chat
        self.sink = sink
        self.peer_host = peer_host
        self.account = None
        self.acknowledges = False
        self.presence_form = FULL
        self.closed = False
        self.paused = False  # the connection is behind
        self.replaying = False  # stored messages are being read back
        self.holding = 0  # the dialect has the connection to itself (a file)
        self.missed = False  # a stored message was not written: replay
        self.last_id = 0  # the newest stored message written
        self._queued = deque()  # unstored events waiting
        self._queued_bytes = 0
        self._presence_due = False
        self._deadline = None
        self._line = deque()  # message sends waiting for their checks or those before them

    @property
    def logged_in(self):
        return self.account is not None

    def in_line(self, send):
        """A connection's message sends overlap (services/dialect.py), yet
        reach the store in the order they came: ``send.store()`` runs once
        ``send.ready`` is true (its checks are over) and every send that
        came before has been stored.  A send that becomes ready later
        calls ``advance``."""
        if not self._line and send.ready:
            send.store()
        else:
            self._line.append(send)

    def advance(self):
        line = self._line
        while line and line[0].ready:
            line.popleft().store()

    @property
    def writable(self):
        return not (self.closed or self.paused or self.replaying or self.holding)

    # -- from the router ---------------------------------------------------

    def push(self, event):
        """A live event: written now, or, while the connection is not
        writable, stored messages are replayed later and others wait.
        Raises RecipientNotReading for a clip in memory that cannot wait."""
        if self.closed:
            _let_go(event)
            return
        if self.writable:
            self.write(event)
        elif isinstance(event, ChatMessage) and event.queued:
            self.missed = True  # it is in the store
        elif isinstance(event, Notice) and event.size and (
            self.paused or self._queued_bytes + event.size > MAX_QUEUED_BYTES
        ):
            raise RecipientNotReading()
        elif len(self._queued) >= MAX_QUEUED_EVENTS:
            audit.slow_client_dropped(self.account, self.peer_host, "queued_events",
                                      f"{MAX_QUEUED_EVENTS} events waiting")
            _let_go(event)
            self.drop()
        else:
            self._queued.append(event)
            self._queued_bytes += event.size if isinstance(event, Notice) else 0

    def presence(self, event):
        """A presence event: only the latest state matters while behind."""
        if self.closed:
            return
        if not self.writable:
            self._presence_due = True  # the current state goes after the replay (or the file)
        else:
            self.sink.send_event(event)

    def kick(self, reason):
        self.chat.kicked(self, reason)

    # -- writing -------------------------------------------------------------

    def write(self, event):
        self.sink.send_event(event)
        if isinstance(event, ChatMessage) and event.author != self.account:
            if event.arrived is not None:
                self.chat.delivery_latency.observe(time.monotonic() - event.arrived)
            if event.queued:
                self.last_id = max(self.last_id, event.id)
                self.chat.written(self, event)

    def catch_up(self):
        """After a replay: what waited meanwhile, unless behind again."""
        while self._queued and self.writable:  # a clip written holds the connection
            event = self._queued.popleft()
            self._queued_bytes -= event.size if isinstance(event, Notice) else 0
            self.write(event)
        if self._presence_due and self.writable:
            self._presence_due = False
            self.sink.send_event(self.chat.presence.current(self))

    # -- from the connection -----------------------------------------------

    def pause(self):
        """The connection's transport is behind: stop writing to it."""
        if self.paused or self.closed:
            return
        self.paused = True
        self._deadline = self.chat.reactor.callLater(self.chat.behind_deadline, self._too_slow)

    def resume(self):
        if not self.paused:
            return
        self.paused = False
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._writable_again()

    def hold(self):
        """Write no live event until ``release`` (the dialect is streaming)."""
        self.holding += 1

    def release(self):
        self.holding -= 1
        self._writable_again()

    def _writable_again(self):
        if not self.writable:
            return  # still behind, or the running replay carries on
        if self.missed and self.logged_in:
            self.chat.replay(self)
        else:
            self.catch_up()

    def _too_slow(self):
        self._deadline = None
        audit.slow_client_dropped(self.account, self.peer_host, "behind_deadline",
                                  f"behind for {self.chat.behind_deadline} s")
        self.drop()

    def drop(self):
        self.closed = True
        self.sink.abort()

    def closing(self):
        """The connection is gone: let go of what waited."""
        self.closed = True
        while self._queued:
            _let_go(self._queued.popleft())
        self._queued_bytes = 0
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None


def _clip_of(event):
    return event.clip if isinstance(event, Notice) else None


def _let_go(event):
    """An event that will not be written: its clip's file goes."""
    clip = _clip_of(event)
    if clip is not None:
        clip.discard()
