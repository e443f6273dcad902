"""The JSON dialect of seed 000, field names exactly as the seed has them.

Where the seed can be read more than one way, every plausible reading works
or gets an error that says what to send instead; docs/protocol.md ("Readings
of the seeds") lists them.
"""

from twisted.internet import defer

import base64
from functools import partial

from twisted.protocols.basic import FileSender

from neochat.chat import audit
from neochat.chat.errors import BadRequest, ChatError, Forbidden, NotFound, NotLoggedIn
from neochat.chat.files import UploadRefused
from neochat.chat.model import NORMAL, PRIVATE, ChatMessage, Kicked, Notice, OnlineUsers, PresenceChange, UserLeft
from neochat.chat.presence import FULL
from neochat.chat.operations import IDS, INT, OPERATIONS
from neochat.chat.profiles import profile_fields
from neochat.chat.transfers import FILE, offer_details
from neochat.services.dialect import Dialect, Rejected, field, pipelined
from neochat.services.voice import Base64Reader
from neochat.wire.json_stream import JsonStreamDecoder, Malformed, RawChunk, encode

JSON_KINDS = {INT: int, IDS: list}
NAME_FIELDS = ("username", "password", "send_user", "rece_user")  # a number here is read as its digits
LOBBY_NAMES = ("", "all")
NORMAL_TYPES = (NORMAL, "group", "public", "lobby", "all")  # chat_type words for a room
OFFER_WORDS = ("", "offer", "request", "send")  # a file's content that makes it an offer
REJECT_WORDS = ("reject", "refuse", "cancel")
CLIP_PLACEHOLDER = "<clip>"  # where a voice clip's base64 goes in its notice (the last field)


class IncomingFile:
    """The raw bytes after a ``file`` offer.  They always leave the stream,
    whatever happened to the offer; ``upload`` is None when they are dropped."""

    def __init__(self, length):
        self.left = length
        self.upload = None
        self.rece_user = None
        self.refusal = None


class JsonDialect(Dialect):
    def __init__(self, transport, chat, peer_host):
        super().__init__(transport, chat, peer_host)
        self.decoder = JsonStreamDecoder()
        self._incoming = None
        self._lost = False

    # -- framing -----------------------------------------------------------

    def feed(self, data):
        self.decoder.feed(data)

    def next_item(self):
        item = self.decoder.next_item()
        if item is None and self._input_ended:
            item = self.decoder.cut_short()  # a half-close inside an object is answered
        return item

    def buffered(self):
        return self.decoder.buffered()

    def handle_item(self, item):
        if isinstance(item, RawChunk):
            return partial(self._file_bytes, item), {"message_type": "file"}
        if isinstance(item, Malformed):
            if item.stat == 413:
                self.frame_refused("json_object")
            if item.message_type is not None:
                raise Rejected({"message_type": item.message_type}, BadRequest(item.reason))
            raise BadRequest(item.reason)
        for name in NAME_FIELDS:
            if type(item.get(name)) is int:
                item[name] = str(item[name])
        message_type = item.get("message_type")
        if not isinstance(message_type, str):
            raise BadRequest("unknown message_type")
        if message_type in OPERATIONS:
            return partial(self._run_operation, OPERATIONS[message_type]), item
        handler = getattr(self, f"cmd_{message_type}", None)
        if handler is None:
            raise BadRequest("unknown message_type")
        return handler, item

    def _run_operation(self, operation, request):
        fields = {}
        for param in operation.params:
            given = {param.name: param.pick(request)}  # under its name or a seed's alias (number, grop_id)
            value = field(given, param.name, JSON_KINDS.get(param.kind, str), required=param.required)
            if param.kind == IDS and not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
                raise BadRequest(f"wrong type for field: {param.name}")
            if value is not None:
                fields[param.name] = value
        return operation.run(self.chat, self.session, fields)

    def encode_reply(self, request, reply):
        if request["message_type"] in OPERATIONS:
            reply = {"message_type": request["message_type"], "content": "success", **reply}
        return encode(reply, default=_jsonable)

    def encode_error(self, request, error):
        message_type = request.get("message_type") if isinstance(request, dict) else None
        known = message_type in OPERATIONS or hasattr(self, f"cmd_{message_type}")
        if not isinstance(message_type, str) or not known:
            message_type = "error"
        return encode({"message_type": message_type, "content": "fail", "reason": error.reason})

    def encode_event(self, event):
        return encode(event_to_json(event))

    def clip_framing(self, event):
        """The clip goes base64-encoded in ``body``, as raw bytes do."""
        fields = {**event.fields, "body": CLIP_PLACEHOLDER}
        encoded = encode({"message_type": event.message_type, **fields})
        head, _, tail = encoded.rpartition(b'"%s"' % CLIP_PLACEHOLDER.encode())
        return head + b'"', b'"' + tail, Base64Reader

    # -- commands ----------------------------------------------------------

    @defer.inlineCallbacks
    def cmd_register(self, request):
        yield self.chat.register(
            field(request, "username"), field(request, "password"), profile_fields(request), self.session.peer_host
        )
        return {"message_type": "register", "content": "success"}

    @defer.inlineCallbacks
    def cmd_login(self, request):
        token = field(request, "token", required=False)
        fresh = yield self.chat.login(
            self.session,
            field(request, "username"),
            field(request, "password", required=token is None),
            acknowledges=field(request, "acks", bool, default=False, required=False),
            token=token,
            presence=field(request, "presence", default=FULL, required=False),
        )
        reply = {"message_type": "login", "content": "success"}
        if field(request, "resume", bool, required=False) or token is not None:
            reply["token"] = fresh
        self.transport.write(encode(reply))
        yield self.chat.welcome(self.session)

    def cmd_ping(self, request):
        """A keepalive, logged in or not: ``pong``."""
        return {"message_type": "pong"}

    def cmd_leave_message(self, request):
        """The seed names the leaver in ``username``; ``send_user`` is read the same way."""
        for name in ("username", "send_user"):
            self._check_own_name(request, name, required=False)
        self.chat.logout(self.session)

    def cmd_update_online_user(self, request):
        """A client asking for the list the server pushes: it gets the list."""
        online = self.chat.online_accounts(self.session)
        return {"message_type": "update_online_user", "online_user": list(online)}

    @pipelined(when=lambda request: str(request.get("chat_type")).lower() == PRIVATE)
    def cmd_word(self, request):
        """``chat_type`` private or normal (any case; group, public, lobby and
        all mean normal).  Without one, a ``rece_user`` that is an account
        makes it private, a group or none makes it normal."""
        chat_type = field(request, "chat_type", required=False)
        chat_type = chat_type.lower() if isinstance(chat_type, str) else chat_type
        self._check_own_name(request, "send_user", required=False)
        content = field(request, "content")
        client_id = field(request, "client_id", required=False)
        if chat_type == PRIVATE:  # the common case: no generator on its way
            sending = self.chat.send_private(self.session, field(request, "rece_user"), content, client_id)
        else:
            rece_user = field(request, "rece_user", default="", required=False)
            sending = self._send_unnamed(chat_type, rece_user, content, client_id)
        return sending.addCallback(self._word_sent, request["message_type"])

    def _word_sent(self, message, message_type):
        if self.session.acknowledges:
            return {
                "message_type": message_type,
                "content": "success",
                "id": message.id,
                "time": message.create_time,
                "client_id": message.client_id,
            }

    @defer.inlineCallbacks
    def _send_unnamed(self, chat_type, rece_user, content, client_id):
        """A word whose chat_type is normal, or missing."""
        if chat_type in NORMAL_TYPES:
            return (yield self._send_normal(rece_user, content, client_id))
        if chat_type is not None:
            raise BadRequest("unknown chat_type: send private or normal")
        if rece_user in LOBBY_NAMES:
            return (yield self.chat.send_room(self.session, rece_user, content, client_id))
        try:
            return (yield self.chat.send_private(self.session, rece_user, content, client_id))
        except NotFound as no_account:  # perhaps a group
            try:
                return (yield self.chat.send_room(self.session, rece_user, content, client_id))
            except NotFound:
                raise no_account

    cmd_send_message = cmd_word  # seed 002's plugin call SendMessage

    @defer.inlineCallbacks
    def _send_normal(self, room, content, client_id):
        """A room message.  The seed writes ``"rece_user":"xxx"`` here too:
        a name that is an account and not a group means the lobby."""
        try:
            return (yield self.chat.send_room(self.session, room, content, client_id))
        except NotFound:
            try:
                yield self.chat.profiles.get(room)
            except NotFound:
                raise NotFound('unknown group: rece_user names no group and no account ("" is the lobby)')
        return (yield self.chat.send_room(self.session, "", content, client_id))

    def cmd_voice(self, request):
        """Seed 000 voice chat: the caller's ``request``, the callee's ``accept``
        or ``reject``, and ``close`` from either.  The answers and ``close`` may
        name the two parties in either order, or not at all: the call is the
        sender's newest one with the named accounts.  Success has no reply."""
        content = field(request, "content").lower()
        calls = self.chat.calls
        named = [field(request, name, required=False) for name in ("send_user", "rece_user")]
        named = [name for name in named if name is not None]
        if content == "request":
            self._check_own_name(request, "send_user", required=False)
            done = calls.request_voice(self.session, field(request, "rece_user"))
        elif content in ("accept", "reject"):
            done = calls.answer_voice(self.session, named, content == "accept")
        elif content == "close":
            done = calls.close_voice(self.session, named)
        else:
            raise BadRequest("unknown content: send request, accept, reject or close")
        return defer.maybeDeferred(lambda: done).addCallback(lambda _: None)  # a Deferred when another node decides

    # -- the in-band file transfer -------------------------------------------

    @defer.inlineCallbacks
    def cmd_file(self, request):
        """An offer (no ``content``; ``file_length`` raw bytes follow it), or
        the receiver's ``accept`` or reject (``content`` reject, refuse or
        cancel).  Only a logged-in offer switches the stream to raw bytes."""
        content = field(request, "content", default="", required=False).lower()
        if content == "accept":
            yield self._send_file(request)
            return None
        if content in REJECT_WORDS:
            return (yield self.cmd_reject(request))
        if content not in OFFER_WORDS:
            raise BadRequest("unknown content: an offer has none (its file_length bytes follow it); "
                             "the receiver sends accept or reject")
        if not self.session.logged_in:
            raise NotLoggedIn()
        length = _byte_count(request, "file_length")
        limit = self.chat.files.limits.max_file_size
        if limit and length > limit:  # too long to skip: the connection closes
            self.frame_refused("max_file_size")
            raise Rejected(request, ChatError(f"file_length must be 0 to {limit}", stat=413), close=True)
        self._incoming = incoming = IncomingFile(length)
        self.decoder.expect_raw(length)
        self._check_own_name(request, "send_user", required=False)
        rece_user = field(request, "rece_user")
        upload = yield self.chat.transfers.begin(
            self.session, rece_user, field(request, "file_name"), length
        )
        incoming.upload, incoming.rece_user = upload, rece_user
        if self._incoming is not incoming:  # cut off while the upload was set up
            upload.abort()
            return None
        if length == 0:
            self._incoming = None
            return (yield self._finish_offer(incoming))
        self._drop_if_cut_off()

    def _file_bytes(self, chunk, request):
        incoming = self._incoming
        if incoming is None:
            return None  # the rest of a file whose sender vanished
        incoming.left -= len(chunk.data)
        if incoming.upload is not None and incoming.refusal is None:
            try:
                incoming.upload.write(chunk.data)
            except UploadRefused as refused:
                incoming.refusal = ChatError(str(refused), stat=413)
        if not chunk.last:
            return None
        self._incoming = None
        if incoming.upload is None:
            return None  # refused at the offer, and answered then
        if incoming.refusal is not None:
            raise incoming.refusal
        return self._finish_offer(incoming)

    @defer.inlineCallbacks
    def _finish_offer(self, incoming):
        message = yield self.chat.transfers.offer(self.session, incoming.upload, incoming.rece_user)
        if self.session.acknowledges:
            return {"message_type": "file", "content": "success", **offer_details(message),
                    "id": message.id, "time": message.create_time}

    def _drop_if_cut_off(self):
        """A sender that vanished before all the bytes came leaves nothing."""
        incoming = self._incoming
        if self._lost and incoming is not None and self.decoder.buffered() < incoming.left:
            if incoming.upload is not None:
                incoming.upload.abort()
            self._incoming = None

    def connection_lost(self):
        self._lost = True
        super().connection_lost()
        self._drop_if_cut_off()

    @defer.inlineCallbacks
    def _send_file(self, request):
        """``file-data`` and then the bytes; nothing else is written to the
        connection in between."""
        offer = yield self.chat.transfers.find_offer(self.session, **self._named_offer(request))
        details = offer_details(offer)
        source = self.chat.transfers.open(offer)
        self.lend_transport()
        try:
            self.transport.write(encode({
                "message_type": "file-data", "file_name": details["file_name"],
                "file_length": details["file_length"], "send_user": offer.author,
                "file_id": details["file_id"],
            }))
            yield FileSender().beginFileTransfer(source, self.transport)
            audit.file_transfer("download", self.session.account, details["file_id"], details["file_length"])
        finally:
            source.close()
            self.take_back_transport()

    def cmd_reject(self, request):
        """The receiver turns an offer down: the file is deleted and (an
        extension) its sender told."""
        offer = self._named_offer(request)
        return self.chat.transfers.reject(self.session, **offer).addCallback(lambda _: None)

    def _named_offer(self, request):
        """How an accept or reject names the offer: ``file_name`` (or the
        extension ``file_id``), and its sender in ``send_user`` (the seed) or
        ``rece_user``, whichever is not the receiver itself."""
        if not self.session.logged_in:
            raise NotLoggedIn()
        named = {field(request, name, required=False) for name in ("send_user", "rece_user")}
        others = named - {None, self.session.account}
        if len(others) > 1:
            raise BadRequest("send_user and rece_user name two other accounts: name the file's sender")
        return {
            "file_name": field(request, "file_name", required="file_id" not in request),
            "file_id": field(request, "file_id", required=False),
            "send_user": others.pop() if others else None,
        }

    def _check_own_name(self, request, name, required=True):
        """The seed repeats the sender's name in requests: it must be ours."""
        value = field(request, name, required=required)
        if not self.session.logged_in:
            raise NotLoggedIn()
        if value is not None and value != self.session.account:
            raise Forbidden(f"{name} is not the logged-in account")


def _byte_count(request, name):
    """A count of bytes: a number, or a string of digits (``"123"``)."""
    value = request.get(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if value is None:
        raise BadRequest(f"missing field: {name}")
    if type(value) is not int or value < 0:
        raise BadRequest(f"wrong type for field: {name} (send the number of bytes)")
    return value


def event_to_json(event):
    if isinstance(event, ChatMessage) and event.chat_type == FILE:
        return {"message_type": "file", "send_user": event.author, "rece_user": event.rece_user,
                **offer_details(event), "id": event.id, "time": event.create_time}
    if isinstance(event, ChatMessage):
        return {
            "message_type": "word",
            "chat_type": event.chat_type,
            "send_user": event.author,
            "rece_user": event.rece_user if event.chat_type == PRIVATE else event.room,
            "content": event.content,
            "id": event.id,
            "time": event.create_time,
        }
    if isinstance(event, OnlineUsers):
        return {"message_type": "update_online_user", "online_user": list(event.accounts)}
    if isinstance(event, UserLeft):
        return {"message_type": "leave_message", "username": event.account}
    if isinstance(event, PresenceChange):
        if event.online is not None:
            return {"message_type": "presence", "online": list(event.online)}
        return {"message_type": "presence", "joined": list(event.joined), "left": list(event.left)}
    if isinstance(event, Kicked):
        return {"message_type": "kicked", "reason": event.reason}
    if isinstance(event, Notice):
        # Raw bytes (a voice clip) travel base64-encoded in JSON.
        fields = {
            name: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
            for name, value in event.fields.items()
        }
        return {"message_type": event.message_type, **fields}
    raise TypeError(f"no JSON form for {event!r}")


def _jsonable(value):
    if isinstance(value, ChatMessage):
        return event_to_json(value)
    raise TypeError(f"not JSON serialisable: {value!r}")
