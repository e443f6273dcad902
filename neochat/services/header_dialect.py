"""The header dialect of seed 002: ``key: value`` lines and a blank line.

Replies carry ``stat`` (HTTP-like codes, 200 for success) and, on failure,
``reason``.  Pushed events are header lines only (a list of accounts is one
space-separated value: accounts hold no white space), so a client written
from the seed can read them.  Replies to the extension operations put lists
in a JSON body (``content-type: application/json``).  docs/protocol.md has
every message; its "Readings of the seeds" section the ways of writing
them that NeoChat accepts.
"""

import json
from collections import deque
from functools import partial
from urllib.parse import unquote

from twisted.internet import defer

from neochat.chat.errors import BadRequest, ChatError, Forbidden, NotLoggedIn
from neochat.chat.fanout import SEPARATORS, recipients, send_to_each
from neochat.chat.model import PRIVATE, ChatMessage, Kicked, Notice, OnlineUsers, PresenceChange, UserLeft
from neochat.chat.operations import GROUP_ID, IDS, INT, OPERATIONS
from neochat.chat.presence import FULL
from neochat.chat.profiles import profile_fields
from neochat.chat.transfers import FILE, offer_details
from neochat.services.dialect import Dialect, Rejected, pipelined
from neochat.services.header_upload import StreamedBodies, begin_upload, is_streamed
from neochat.services.voice import ClipReceiver, check_recipient, deliver_voice, is_voice
from neochat.wire.headers import (
    BodyChunk, BodyEnd, BodyStart, HeaderDecoder, HeaderError, encode_head, encode_message,
)

SEED_ALIASES = {"registered": "register", "send_message": "text"}  # the seed's names, and its SendMessage
# Fields naming accounts: seed 002 writes accounts URL-encoded in names (%2B86101), so these are decoded.
ACCOUNT_FIELDS = ("user_account", "friends", "account", "with_user", "friend", "member")
REPEATABLE = frozenset({"friends"})  # friends: a, then friends: b, names both
KEY_REQUEST_FIELDS = {"user_account", "friends", "call_type", "type", "body"}  # seed 002's key request
JSON_BODY = {"content-type": "application/json"}
QUEUED_ITEM_COST = 256  # bytes counted per decoded message waiting to run
BODY_IDLE_TIMEOUT = 10.0  # seconds without a byte of a body before it is cut off


class HeaderDialect(Dialect):
    body_idle_timeout = BODY_IDLE_TIMEOUT

    def __init__(self, transport, chat, peer_host):
        super().__init__(transport, chat, peer_host)
        self.decoder = HeaderDecoder(streamed=is_streamed, repeatable=REPEATABLE)
        self.bodies = StreamedBodies(self._begin_body)
        self._items = deque()
        self._idle_call = None

    # -- framing -----------------------------------------------------------

    def feed(self, data):
        self._items.extend(self.decoder.feed(data))
        self._watch_body()

    def end_of_input(self):
        """A half-close ends a body without a length, and a last message without its blank line."""
        self._stop_watching()
        self._items.extend(self.decoder.feed_eof())

    def connection_lost(self):
        self._stop_watching()
        if not self._input_ended:
            self._items.extend(self.decoder.cut())  # a body cut short: its upload goes
        super().connection_lost()

    def next_item(self):
        return self._items.popleft() if self._items else None

    def buffered(self):
        """Decoded items waiting to run.  The decoder's own partial message
        is bounded by its limits and must be allowed to complete."""
        return sum(QUEUED_ITEM_COST + len(_payload(item)) for item in self._items if not isinstance(item, HeaderError))

    def _watch_body(self):
        """While the client owes body bytes, a silence of body_idle_timeout cuts the body off."""
        if not self.decoder.in_body:
            self._stop_watching()
        elif self._idle_call is None:
            self._idle_call = self.chat.reactor.callLater(self.body_idle_timeout, self._body_idle)
        else:
            self._idle_call.reset(self.body_idle_timeout)

    def _stop_watching(self):
        if self._idle_call is not None:
            self._idle_call.cancel()
            self._idle_call = None

    def _body_idle(self):
        self._idle_call = None
        if self._paused or self._busy or self._items:
            self._watch_body()  # we are the slow side: not the client's silence
            return
        self._items.extend(self.decoder.cut())
        self._pump()

    def handle_item(self, item):
        if isinstance(item, HeaderError):
            if item.stat in (413, 431):
                self.frame_refused("header_line" if item.stat == 431 else
                                   "header_body" if item.ends_stream or item.message_type == "voice" else
                                   "header_frame")
            raise Rejected({"message_type": item.message_type}, ChatError(item.reason, item.stat), item.ends_stream)
        if isinstance(item, (BodyChunk, BodyEnd)):
            return self.bodies.handler_for(item)
        if isinstance(item, BodyStart):  # its body follows whatever the headers say
            try:
                return self.bodies.handler_for(item, _read_request(item))
            except Rejected as rejected:
                return self.bodies.handler_for(item, rejected.request, rejected.error)
        request = _read_request(item)
        if "message_type" not in request and "friends" in request and request.keys() <= KEY_REQUEST_FIELDS:
            return self.cmd_call_key, request  # seed 002's call key request, sent here
        if not request.get("message_type"):
            raise Rejected(request, BadRequest("missing field: message_type"))
        message_type = request["message_type"].lower()
        name = SEED_ALIASES.get(message_type, message_type)
        if name in OPERATIONS:
            return partial(self._run_operation, OPERATIONS[name]), request
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            raise Rejected(request, BadRequest("unknown message_type"))
        return handler, request

    def _run_operation(self, operation, request):
        named = next((param for param in operation.params if "user_account" in param.aliases), None)
        if named is None or request.get(named.name) is not None:
            self.check_own_account(request, required=False)  # user_account is the sender
            request = {name: value for name, value in request.items() if name != "user_account"}
        fields = {}
        for param in operation.params:
            value = param.pick(request)
            if value is None:
                if param.required:
                    raise BadRequest(f"missing field: {param.name}")
                continue
            fields[param.name] = _convert(param, value)
        return operation.run(self.chat, self.session, fields)

    # -- encoding ----------------------------------------------------------

    def encode_reply(self, request, reply):
        return _encode_with_lists({**_reply_to(request), "stat": "200"}, reply)

    def encode_error(self, request, error):
        return encode_message({**_reply_to(request), "stat": str(error.stat), "reason": error.reason})

    def encode_event(self, event):
        if isinstance(event, ChatMessage):
            return encode_chat_message(event)
        if isinstance(event, OnlineUsers):
            return encode_message({"message_type": "update_online_user", "online_user": " ".join(event.accounts)})
        if isinstance(event, UserLeft):
            return encode_message({"message_type": "leave_message", "user_account": event.account})
        if isinstance(event, PresenceChange):
            if event.online is not None:
                return encode_message({"message_type": "presence", "online": " ".join(event.online)})
            return encode_message({"message_type": "presence", "joined": " ".join(event.joined),
                                   "left": " ".join(event.left)})
        if isinstance(event, Kicked):
            return encode_message({"message_type": "kicked", "reason": event.reason})
        if isinstance(event, Notice):
            fields = dict(event.fields)
            body = fields.pop("body", b"")
            return encode_message({"message_type": event.message_type, **fields}, body)
        raise TypeError(f"no header form for {event!r}")

    def clip_framing(self, event):
        """The clip is the body, as raw bytes are."""
        fields = {name: value for name, value in event.fields.items() if name != "body"}
        return encode_head({"message_type": event.message_type, **fields}, event.clip.size), b"", None

    # -- the seed's messages -------------------------------------------------

    def cmd_register(self, request):
        """The seed's user-table fields (``user_name``...) may come along and are stored."""
        d = self.chat.register(
            _required(request, "user_account"), _required(request, "user_password"), profile_fields(request),
            self.session.peer_host,
        )
        return d.addCallback(lambda _: {})

    @defer.inlineCallbacks
    def cmd_login(self, request):
        token = request.get("token")
        fresh = yield self.chat.login(
            self.session,
            _required(request, "user_account"),
            request.get("user_password") if token is not None else _required(request, "user_password"),
            acknowledges=request.get("acks") in ("1", "true", "yes"),
            token=token,
            presence=request.get("presence", FULL),
        )
        reply = {"message_type": request["message_type"], "stat": "200"}
        if request.get("resume") in ("1", "true", "yes") or token is not None:
            reply["token"] = fresh
        self.transport.write(encode_message(reply))
        yield self.chat.welcome(self.session)

    def cmd_ping(self, request):
        """A keepalive, logged in or not: ``message_type: pong``."""
        self.transport.write(encode_message({"message_type": "pong", "stat": "200"}))

    def cmd_leave_message(self, request):
        self.check_own_account(request, required=False)
        self.chat.logout(self.session)
        return {}

    @pipelined(when=lambda request: _one_name(request.get("friends")))
    @defer.inlineCallbacks
    def cmd_text(self, request):
        """Text to a friend (``friends``; several, space or comma separated, get
        a copy each), a group (``group_id``) or the lobby (``group_id: all``).
        Multi-line text comes as the body."""
        self.check_own_account(request)
        text = _text(request)
        if text is None:
            raise BadRequest("missing field: text (or a content-length body)")
        client_id = request.get("client_id")
        group_id = GROUP_ID.pick(request)
        if request.get("friends") is not None and group_id is not None:
            raise BadRequest("give friends or group_id, not both")
        if request.get("friends") is not None:
            names = recipients(request["friends"])
            if len(names) > 1:
                messages = yield send_to_each(self.chat, self.session, names, text, client_id)
                return {"sent": [{"friends": m.rece_user, "id": m.id, "time": m.create_time} for m in messages]}
            message = yield self.chat.send_private(self.session, names[0], text, client_id)
        elif group_id is not None:
            message = yield self.chat.send_room(self.session, group_id, text, client_id)
        else:
            raise BadRequest("missing field: friends (or group_id)")
        return {"id": message.id, "time": message.create_time, "client_id": message.client_id}

    @defer.inlineCallbacks
    def cmd_voice(self, request):
        """A voice message without a body: shaped like a text message
        (``text:``, say with a ``<file>`` reference to audio uploaded before),
        it goes to the friend with its text.  One with a clip (a
        content-length body) is streamed: ``_begin_body``."""
        friend = yield self._voice_recipient(request)
        yield deliver_voice(self.chat, self.session.account, friend, request.get("text"))
        return {}

    def _begin_body(self, request, length):
        """The receiver of a streamed body, once its header lines allow it:
        a voice clip's, or a seed-002 upload's."""
        if is_voice(request):
            return self._begin_voice(request, length)
        return begin_upload(self, request, length)

    @defer.inlineCallbacks
    def _begin_voice(self, request, length):
        """A voice clip (the body) for an account online now, on any node (with
        ``--friends-only``, like text, only for a friend), checked before its
        first byte is read; it goes to the voice spool as it comes."""
        friend = yield self._voice_recipient(request, length)
        return ClipReceiver(self.chat, self.session.account, friend, request.get("text"), length)

    @defer.inlineCallbacks
    def _voice_recipient(self, request, length=0):
        self.check_own_account(request)
        friend = _one_friend(request)
        if self.chat.friends_only and not (yield self.chat.friends.are_friends(self.session.account, friend)):
            raise Forbidden("not a friend")
        if request.get("text") is None and not length:
            raise BadRequest("voice needs its audio as a content-length body, or a text")
        check_recipient(self.chat.router, friend, length)
        return friend

    def cmd_call_key(self, request):
        """A connection key for a call to ``friends`` (``call_type``: call or
        videocall), as the cell port gives one, for a logged-in caller.  Also
        seed 002's key request as it is (``user_account`` and ``friends`` only)."""
        self.check_own_account(request)
        kind = request.get("call_type", "call")
        return {"connection_key": self.chat.calls.new_key(self.session, _one_friend(request), kind)}

    def cmd_call(self, request):
        """Ring ``friends`` with our key; they get ``user_account`` and ``cell_key``."""
        self.check_own_account(request)
        done = self.chat.calls.ring(
            self.session, _one_friend(request), _required(request, "cell_key"), request["message_type"].lower()
        )
        return _empty_reply(done)

    cmd_videocall = cmd_call

    def cmd_cell(self, request):
        """``cell_type`` 200: the callee accepts; 404: the callee rejects, or
        either party hangs up.  The other party gets ``message_type: cell``
        with ``user_account`` itself and ``friends`` us, as the seed shows."""
        self.check_own_account(request)
        answer = _required(request, "cell_type")
        if answer not in ("200", "404"):
            raise BadRequest("cell_type must be 200 or 404")
        return _empty_reply(self.chat.calls.answer_call(
            self.session, _one_friend(request), answer == "200", request.get("cell_key")))

    def check_own_account(self, request, required=True):
        """Seed messages name the sender in ``user_account``: it must be us."""
        if not self.session.logged_in:
            raise NotLoggedIn()
        account = request.get("user_account")
        if account is None and required:
            raise BadRequest("missing field: user_account")
        if account is not None and account != self.session.account:
            raise Forbidden("user_account is not the logged-in account")


def _empty_reply(done):
    """Success with no fields, once ``done`` (None, or a Deferred when another node decides)."""
    return defer.maybeDeferred(lambda: done).addCallback(lambda _: {})


def _read_request(item):
    """A decoded message as a request: its headers, ``body``, and account fields URL-decoded."""
    request = dict(item.headers, body=getattr(item, "body", b""))
    for name in ACCOUNT_FIELDS:
        if "%" in request.get(name, ""):
            try:
                request[name] = unquote(request[name], errors="strict")
            except UnicodeDecodeError:
                raise Rejected(request, BadRequest(f"{name} is not valid URL-encoded UTF-8"))
    return request


def _payload(item):
    return item.data if isinstance(item, BodyChunk) else getattr(item, "body", b"")


def _reply_to(request):
    """What names the request in its reply: its ``message_type``; without
    one, seed 002's upload its ``task_id`` and seed 002's key request nothing."""
    request = request or {}
    if "message_type" in request:
        return {"message_type": request["message_type"] or "error"}
    if "task_id" in request:
        return {"task_id": request["task_id"]}
    if "friends" in request:
        return {}
    return {"message_type": "error"}


def _one_name(friends):
    """A text to one friend (or a group) is sent at once, in order with the
    connection's other sends; one to several friends checks them all first."""
    return friends is None or (isinstance(friends, str) and not SEPARATORS.search(friends.strip()))


def _required(request, name):
    value = request.get(name)
    if not value:
        raise BadRequest(f"missing field: {name}")
    return value


def _one_friend(request):
    names = recipients(_required(request, "friends"))
    if len(names) > 1:
        raise BadRequest(f"friends must name one account for {request.get('message_type') or 'a call key'}")
    return names[0]


def _text(request):
    """The ``text`` header, else the body as UTF-8; None when neither came."""
    if request.get("text") is not None:
        return request["text"]
    if not request["body"]:
        return None
    try:
        return request["body"].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("text body is not UTF-8")


def _convert(param, value):
    try:
        if param.kind == INT:
            return int(value)
        if param.kind == IDS:
            return [int(part) for part in value.split(",")]
    except ValueError:
        raise BadRequest(f"wrong type for field: {param.name}")
    return value


def encode_chat_message(message):
    """As the seed forwards text: the sender in ``user_account``, no ``friends``."""
    return encode_message(*_chat_message_headers(message))


def _chat_message_headers(message):
    if message.chat_type == FILE:
        details = offer_details(message)
        return {"user_account": message.author, "message_type": "file", "file": details["file_id"],
                "file_name": details["file_name"], "file_length": str(details["file_length"]),
                "id": str(message.id), "time": str(message.create_time)}, b""
    headers = {"user_account": message.author, "message_type": "text"}
    if message.chat_type != PRIVATE:
        headers["group_id"] = message.room
    headers.update(id=str(message.id), time=str(message.create_time))
    if "\n" in message.content or "\r" in message.content:
        return headers, message.content.encode("utf-8")
    headers["text"] = message.content
    return headers, b""


def _message_as_dict(message):
    """A history entry: like a forwarded text, plus ``friends`` on private ones."""
    headers, _ = _chat_message_headers(message)
    headers["text"] = message.content
    if message.chat_type == PRIVATE:
        headers["friends"] = message.rece_user
    return headers


def _encode_with_lists(headers, fields):
    """Scalars become headers; lists and dicts go in a JSON body."""
    body = b""
    structured = {}
    for name, value in fields.items():
        if isinstance(value, (list, dict)):
            structured[name] = value
        elif isinstance(value, bool):
            headers[name] = "true" if value else "false"
        elif value is not None:
            headers[name] = str(value)
    if structured:
        headers.update(JSON_BODY)
        body = json.dumps(structured, ensure_ascii=False, default=_json_default).encode("utf-8")
    return encode_message(headers, body)


def _json_default(value):
    if isinstance(value, ChatMessage):
        return _message_as_dict(value)
    raise TypeError(f"not JSON serialisable: {value!r}")
