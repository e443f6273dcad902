"""Header-dialect voice clips through the voice spool (neochat/chat/clips.py).

Receiving: the header dialect checks a clip from its header lines, then
``ClipReceiver`` writes its body to a spool file as it arrives
(services/header_upload.py streams it), and once it is complete hands it
to the recipient's session like any live event: written at once, or
waiting its turn (the recipient is behind, or busy with another clip or a
file) in the spool, whose limits bound what waits.

Sending: a dialect writes a clip with ``stream_clip``: its head, then the
file's bytes through ``StreamSender``, a push producer that writes a chunk
at a time while the recipient's transport takes them and passes the
transport's pause and resume on to the dialect, so that a recipient that
does not read counts as behind (neochat/chat/session.py: the deadline drops
it).  Nothing else is written to the connection meanwhile.  The file is
deleted afterwards, delivered or not.
"""

import base64

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from neochat.chat.errors import ChatError, NotFound
from neochat.chat.files import references
from neochat.chat.model import Notice

VOICE = "voice"
CHUNK = 64 * 1024  # bytes read from a clip's file at a time
TOO_LARGE_TO_CROSS = "voice clip too large to reach another node"
JSON_OVERHEAD = 1024  # a voice event's JSON besides its base64 body, generously


def is_voice(headers):
    return (headers.get("message_type") or "").lower() == VOICE


def check_recipient(router, friend, length):
    """Before a clip's body is read: 480 when the friend is online on no
    node; 413 when it is on another node (only a cluster router has such
    accounts) and the clip too large to cross in its event, or when the
    friend's connection carries messages of bounded size (a WebSocket) and
    the clip's JSON form would not fit in one."""
    if not router.is_online(friend):
        raise NotFound("friend offline", stat=480)
    if not length:
        return
    session = router.session_of(friend)
    if session is None and length > router.max_clip:
        raise ChatError(TOO_LARGE_TO_CROSS, stat=413)
    largest = session.sink.largest_message if session is not None else None
    if largest is not None and JSON_OVERHEAD + 4 * ((length + 2) // 3) > largest:
        raise ChatError(f"voice clip too large for the friend's WebSocket (at most {largest} bytes of JSON)", stat=413)


@defer.inlineCallbacks
def deliver_voice(chat, sender, friend, text=None, clip=None):
    """A voice message to ``friend``, with its ``text`` and/or its ``clip``
    (which the recipient's session owns from then on, or which is discarded)."""
    fields = {"user_account": sender}
    try:
        if text is not None:
            fields["text"] = text
            yield chat.files.grant_for_message(sender, references(text), recipients=[friend])
        session = chat.router.session_of(friend)
        if session is not None:
            if clip is not None:
                fields["body"] = clip
            session.push(Notice(VOICE, fields))
            return
        if clip is not None:  # to another node: in the event, as bytes (at most the router's max_clip)
            fields["body"] = clip.contents()
            clip.discard()
        if not chat.router.deliver(friend, Notice(VOICE, fields)):
            raise NotFound("friend offline", stat=480)
    except BaseException:
        if clip is not None:
            clip.discard()
        raise


class ClipReceiver:
    """An allowed clip's body on its way to the spool (see header_upload.StreamedBodies)."""

    def __init__(self, chat, sender, friend, text, length):
        self.chat = chat
        self.sender, self.friend, self.text = sender, friend, text
        self.clip = chat.clips.reserve(sender, length) if length else None
        self.size = 0

    def write(self, data):
        self.clip.write(data)
        self.size += len(data)

    def abort(self):
        if self.clip is not None:
            self.clip.discard()

    def finish(self):
        if self.clip is not None:
            self.clip.close()
        return deliver_voice(self.chat, self.sender, self.friend, self.text, self.clip).addCallback(lambda _: {})


@defer.inlineCallbacks
def stream_clip(dialect, clip, head, tail=b"", encoder=None):
    """Write ``head``, the clip's bytes (read through ``encoder(file)`` if
    given) and ``tail`` to the dialect's connection, nothing else in between;
    then delete the clip's file."""
    dialect.lend_transport()
    try:
        with clip.open() as source:
            dialect.transport.write(head)
            yield StreamSender(dialect, encoder(source) if encoder else source).send()
            dialect.transport.write(tail)
    except StoppedSending:
        pass  # the connection is gone, and the clip with it
    finally:
        clip.discard()
        dialect.take_back_transport()


class StoppedSending(Exception):
    pass


@implementer(IPushProducer)
class StreamSender:
    """Writes ``source`` to the dialect's transport a chunk at a time, as
    fast as the transport takes it; the transport's pause and resume are
    the dialect's too."""

    def __init__(self, dialect, source):
        self.dialect = dialect
        self.source = source
        self.paused = False
        self.done = None

    def send(self):
        """Deferred: fires once every byte is written, or fails with
        StoppedSending when the connection goes first."""
        self.done = defer.Deferred()
        self.dialect.transport.registerProducer(self, True)
        self._write_more()
        return self.done

    def pauseProducing(self):
        self.paused = True
        self.dialect.pauseProducing()

    def resumeProducing(self):
        self.paused = False
        self.dialect.resumeProducing()
        self._write_more()

    def stopProducing(self):
        self._end(StoppedSending())

    def _write_more(self):
        while self.done is not None and not self.paused:
            chunk = self.source.read(CHUNK)
            if not chunk:
                self._end(None)
                return
            self.dialect.transport.write(chunk)

    def _end(self, error):
        done, self.done = self.done, None
        if done is None:
            return
        if error is None:
            done.callback(None)
        else:
            done.errback(error)


class Base64Reader:
    """A file read through base64, as the JSON dialect writes raw bytes."""

    def __init__(self, source):
        self.source = source

    def read(self, size):
        return base64.b64encode(self.source.read(max(size - size % 3, 3)))
