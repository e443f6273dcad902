"""The seed-000 in-band file transfer.

A sender offers a file to one user through the message server: the bytes go
into the file library (the same store the FTP service serves), and the offer
becomes a chat message of chat_type ``file`` queued for the receiver like any
private message, so an offline receiver is told at the next login.  The
receiver accepts (and gets the bytes) or rejects (and the file is deleted).
"""

import json
import uuid

from twisted.internet import defer

from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, ChatError, NotFound
from neochat.chat.files import FileTooLarge, UploadRefused
from neochat.chat.model import ChatMessage, Notice
from neochat.store.database import MissingReference

FILE = "file"  # chat_type of an offer
OFFERS_SEARCHED = 50


def offer_details(message):
    """{file_id, file_name, file_length} of an offer message."""
    return json.loads(message.content)


class Transfers:
    def __init__(self, store, router, library):
        self.store = store
        self.router = router
        self.library = library

    @defer.inlineCallbacks
    def begin(self, session, rece_user, file_name, file_length):
        """Deferred[Upload] for the bytes that follow an offer."""
        check_account_name(rece_user)
        if not file_name:
            raise BadRequest("missing field: file_name")
        limit = self.library.limits.max_file_size
        if file_length < 0 or (limit and file_length > limit):
            raise ChatError(f"file_length must be 0 to {limit}", stat=413)
        if rece_user not in (yield self.store.users.existing([rece_user])):
            raise NotFound("unknown recipient")
        try:
            upload = yield self.library.begin_upload(session.account, file_name)
        except UploadRefused as refused:
            raise ChatError(str(refused), stat=413)
        return upload

    @defer.inlineCallbacks
    def offer(self, session, upload, rece_user):
        """The bytes are in: store the file, grant the receiver, queue the offer."""
        info = yield self.finish_upload(upload)
        yield self.library.grant_for_message(session.account, [info.name], recipients=[rece_user])
        details = {"file_id": info.name, "file_name": upload.original_name, "file_length": info.size}
        message = ChatMessage(
            author=session.account, chat_type=FILE, content=json.dumps(details, ensure_ascii=False),
            client_id=uuid.uuid4().hex, rece_user=rece_user,
        )
        try:
            stored = yield self.store.messages.add(message, [rece_user])
        except MissingReference:
            raise NotFound("unknown recipient")
        message.id, message.create_time = stored.id, stored.create_time
        self.router.deliver(rece_user, message)
        return message

    @defer.inlineCallbacks
    def begin_upload(self, session, file_name, length=None):
        """Seed 002's upload exchange: Deferred[Upload] for a file of ``length``
        bytes (None: known only when its bytes end); finish it with ``finish_upload``."""
        limit = self.library.limits.max_file_size
        try:
            if length is not None and limit and length > limit:
                refusal = FileTooLarge(limit)
                self.library.refused(refusal, session.account)
                raise refusal
            return (yield self.library.begin_upload(session.account, file_name))
        except UploadRefused as refused:
            raise ChatError(str(refused), stat=413)

    @staticmethod
    @defer.inlineCallbacks
    def finish_upload(upload):
        """Deferred[FileInfo]; over the quota is a 413."""
        try:
            return (yield upload.finish())
        except UploadRefused as refused:
            raise ChatError(str(refused), stat=413)

    @defer.inlineCallbacks
    def find_offer(self, session, file_name=None, file_id=None, send_user=None):
        """The newest offer to us matching ``file_id``, else ``file_name``
        (and ``send_user``), whose file we may still read."""
        rows = yield self.store.messages.to_recipient(session.account, FILE, send_user, OFFERS_SEARCHED)
        for row in rows:
            offer = ChatMessage.from_row(row)
            details = offer_details(offer)
            matches = details["file_id"] == file_id if file_id else details["file_name"] == file_name
            if matches and (yield self.library.may_read(session.account, details["file_id"])):
                return offer
        raise NotFound("no such file")

    def open(self, offer):
        """The offered file, open for reading (blocking open, streamed by the caller)."""
        try:
            return self.library.open_for_reading(offer_details(offer)["file_id"])
        except FileNotFoundError:
            raise NotFound("no such file")

    @defer.inlineCallbacks
    def reject(self, session, file_name=None, file_id=None, send_user=None):
        """Discard the file and tell its sender."""
        offer = yield self.find_offer(session, file_name, file_id, send_user)
        details = offer_details(offer)
        yield self.library.delete_file(offer.author, details["file_id"])
        self.router.deliver(offer.author, Notice("reject", {
            "file_name": details["file_name"], "file_id": details["file_id"], "rece_user": session.account,
        }))
        return details
