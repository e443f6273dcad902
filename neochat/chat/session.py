"""A connection as the chat domain sees it."""

from neochat.chat.model import ChatMessage


class Session:
    """Holds the account a connection logged in as and delivers events to it.

    ``sink`` is the dialect side: ``send_event(event)`` writes one event in
    the connection's dialect, ``close()`` drops the connection.

    While pending messages are replayed after login, live events are held
    back and sent afterwards, so the client sees one ordered stream.
    """

    def __init__(self, chat, sink, peer_host):
        self.chat = chat
        self.sink = sink
        self.peer_host = peer_host
        self.account = None
        self.acknowledges = False
        self.closed = False
        self._held = None

    @property
    def logged_in(self):
        return self.account is not None

    def hold(self):
        self._held = []

    def release(self, already_sent=()):
        held, self._held = self._held or [], None
        for event in held:
            if not (isinstance(event, ChatMessage) and event.id in already_sent):
                self.send(event)

    def push(self, event):
        """Called by the router for every live event."""
        if self._held is not None:
            self._held.append(event)
        else:
            self.send(event)

    def send(self, event):
        if self.closed:
            return
        self.sink.send_event(event)
        if isinstance(event, ChatMessage) and event.author != self.account:
            self.chat.written(self, event)

    def kick(self, reason):
        self.chat.kicked(self, reason)
