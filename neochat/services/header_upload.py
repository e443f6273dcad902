"""Seed 002's upload exchange on the message server, streamed to the file library.

The seed's upload block (``task_id``, ``user_account``, ``time``) has no
``message_type``; the header decoder streams its body: ``content-length``
bytes, or without one every byte up to the end of the stream, which the
client marks by half-closing its side.  The bytes go to disk as they come
(memory stays flat, the limit is --max-file-size), and the one reply, with
the ``task_id``, comes once the file is stored or refused.
"""

from functools import partial

from twisted.internet import defer

from neochat.chat.errors import ChatError
from neochat.chat.files import UploadRefused
from neochat.wire.headers import BodyChunk, BodyStart

LENGTH_REQUIRED = (
    "the file has no content-length and the stream did not end: send content-length: N"
    " before the blank line, or half-close the connection after the last byte"
)


def is_upload(headers):
    """The decoder's test for a streamed body: the seed's upload block."""
    return "message_type" not in headers and "task_id" in headers


class Incoming:
    """One upload in progress; ``upload`` stays None when it was refused at the start."""

    def __init__(self, request, length):
        self.request = request
        self.length = length  # None: up to the end of the stream
        self.upload = None
        self.refused = False


class UploadExchange:
    """Runs the upload items of one header connection: BodyStart, BodyChunk..., BodyEnd."""

    def __init__(self, dialect):
        self.dialect = dialect
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
        self.dialect.check_own_account(request)
        transfers = self.dialect.chat.transfers
        session = self.dialect.session
        incoming.upload = yield transfers.begin_upload(session, request.get("file_name", "file"), incoming.length)

    def _write(self, incoming, data, request):
        if incoming.upload is None or incoming.refused:
            return None  # refused already, and answered then: its bytes are dropped
        try:
            incoming.upload.write(data)
        except UploadRefused as refused:
            incoming.refused = True
            raise ChatError(str(refused), stat=413)
        return None

    @defer.inlineCallbacks
    def _end(self, incoming, complete, request):
        if incoming.upload is None or incoming.refused:
            return None
        if not complete:
            incoming.upload.abort()
            if incoming.length is None:
                raise ChatError(LENGTH_REQUIRED, stat=411)
            raise ChatError(f"body incomplete: {incoming.upload.size} of {incoming.length} bytes came", stat=400)
        info = yield self.dialect.chat.transfers.finish_upload(incoming.upload)
        return {"file": info.name}
