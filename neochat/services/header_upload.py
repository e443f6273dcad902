"""Streamed header-dialect bodies: seed 002's upload exchange, to the file
library, and voice clips, to the voice spool (services/voice.py).

The seed's upload block (``task_id``, ``user_account``, ``time``) has no
``message_type``; the header decoder streams its body: ``content-length``
bytes, or without one every byte up to the end of the stream, which the
client marks by half-closing its side.  A voice clip's ``content-length``
body is streamed too.  The request is checked from its header lines before
the first body byte is taken; a refused one's bytes are dropped as they come.
The bytes go to disk as they come (memory stays flat), and the one reply
comes once the body is stored or refused.
"""

from functools import partial

from twisted.internet import defer

from neochat.chat.errors import ChatError
from neochat.chat.files import UploadRefused
from neochat.services.voice import is_voice
from neochat.wire.headers import BodyChunk, BodyStart

LENGTH_REQUIRED = (
    "the file has no content-length and the stream did not end: send content-length: N"
    " before the blank line, or half-close the connection after the last byte"
)


def is_upload(headers):
    """The seed's upload block."""
    return "message_type" not in headers and "task_id" in headers


def is_streamed(headers):
    """The header decoder's test for a streamed body: an upload's, or a
    voice clip's (with a content-length: one without has no body)."""
    return is_upload(headers) or (is_voice(headers) and "content-length" in headers)


class Incoming:
    """One body in progress; ``receiver`` stays None when it was refused at the start."""

    def __init__(self, request, length):
        self.request = request
        self.length = length  # None: up to the end of the stream
        self.receiver = None
        self.refused = False


class StreamedBodies:
    """Runs the streamed-body items of one header connection: BodyStart,
    BodyChunk..., BodyEnd.  ``begin(request, length)`` checks a request and
    returns (a Deferred of) the receiver of its body, which has ``write(data)``
    (a ChatError past a limit), ``abort()``, ``finish()`` (the reply, or a
    Deferred of it) and ``size`` (bytes received)."""

    def __init__(self, begin):
        self.begin = begin
        self.incoming = None

    def handler_for(self, item, request=None, refusal=None):
        """A (handler, request) pair for the dialect's pump.  A BodyStart comes
        with its request, or the ChatError that refuses it (its bytes still follow)."""
        if isinstance(item, BodyStart):
            self.incoming = Incoming(request, item.length)
            return partial(self._begin, self.incoming, refusal), request
        incoming = self.incoming
        if isinstance(item, BodyChunk):
            return partial(self._write, incoming, item.data), incoming.request
        self.incoming = None
        return partial(self._end, incoming, item.complete), incoming.request

    @defer.inlineCallbacks
    def _begin(self, incoming, refusal, request):
        if refusal is not None:
            raise refusal
        incoming.receiver = yield self.begin(request, incoming.length)

    def _write(self, incoming, data, request):
        if incoming.receiver is None or incoming.refused:
            return None  # refused already, and answered then: its bytes are dropped
        try:
            incoming.receiver.write(data)
        except ChatError:
            incoming.refused = True
            raise
        return None

    def _end(self, incoming, complete, request):
        if incoming.receiver is None or incoming.refused:
            return None
        if not complete:
            incoming.receiver.abort()
            if incoming.length is None:
                raise ChatError(LENGTH_REQUIRED, stat=411)
            raise ChatError(f"body incomplete: {incoming.receiver.size} of {incoming.length} bytes came", stat=400)
        return incoming.receiver.finish()


@defer.inlineCallbacks
def begin_upload(dialect, request, length):
    """The receiver of a seed-002 upload's bytes, once the request is allowed."""
    dialect.check_own_account(request)
    transfers = dialect.chat.transfers
    upload = yield transfers.begin_upload(dialect.session, request.get("file_name", "file"), length)
    return FileUpload(transfers, upload)


class FileUpload:
    def __init__(self, transfers, upload):
        self.transfers = transfers
        self.upload = upload

    @property
    def size(self):
        return self.upload.size

    def write(self, data):
        try:
            self.upload.write(data)
        except UploadRefused as refused:
            raise ChatError(str(refused), stat=413)

    def abort(self):
        self.upload.abort()

    def finish(self):
        return self.transfers.finish_upload(self.upload).addCallback(lambda info: {"file": info.name})
