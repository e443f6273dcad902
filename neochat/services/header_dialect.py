"""The header dialect of seed 002: ``key: value`` lines and a blank line.

Replies carry ``stat`` (HTTP-like codes, 200 for success) and, on failure,
``reason``.  Pushed events are header lines only (a list of accounts is one
space-separated value: accounts hold no white space), so a client written
from the seed can read them.  Replies to the extension operations put lists
in a JSON body (``content-type: application/json``).  docs/protocol.md has
every message.
"""

import json
from collections import deque
from functools import partial

from twisted.internet import defer

from neochat.chat.errors import BadRequest, ChatError, Forbidden, NotFound, NotLoggedIn
from neochat.chat.model import PRIVATE, ChatMessage, Kicked, Notice, OnlineUsers, PresenceChange, UserLeft
from neochat.chat.presence import FULL
from neochat.chat.operations import IDS, INT, OPERATIONS
from neochat.chat.transfers import FILE, offer_details
from neochat.services.dialect import Dialect, Rejected, pipelined
from neochat.wire.headers import HeaderDecoder, HeaderError, HeaderMessage, encode_message

SEED_ALIASES = {"registered": "register"}
JSON_BODY = {"content-type": "application/json"}
QUEUED_ITEM_COST = 256  # bytes counted per decoded message waiting to run


class HeaderDialect(Dialect):
    def __init__(self, transport, chat, peer_host):
        super().__init__(transport, chat, peer_host)
        self.decoder = HeaderDecoder()
        self._items = deque()

    # -- framing -----------------------------------------------------------

    def feed(self, data):
        self._items.extend(self.decoder.feed(data))

    def next_item(self):
        return self._items.popleft() if self._items else None

    def buffered(self):
        """Decoded messages waiting to run.  The decoder's own partial message
        is bounded by its limits and must be allowed to complete."""
        return sum(QUEUED_ITEM_COST + len(item.body) for item in self._items if isinstance(item, HeaderMessage))

    def handle_item(self, item):
        if isinstance(item, HeaderError):
            raise Rejected({"message_type": item.message_type}, ChatError(item.reason, item.stat))
        request = dict(item.headers, body=item.body)
        if "message_type" not in request and "task_id" in request:
            return self.cmd_upload, request
        message_type = request.get("message_type", "")
        name = SEED_ALIASES.get(message_type, message_type)
        if name in OPERATIONS:
            return partial(self._run_operation, OPERATIONS[name]), request
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            raise Rejected(request, BadRequest("unknown message_type"))
        return handler, request

    def _run_operation(self, operation, request):
        self._check_own_account(request, required=False)
        fields = {}
        for param in operation.params:
            value = request.get(param.name)
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

    # -- the seed's messages -------------------------------------------------

    def cmd_register(self, request):
        d = self.chat.register(_required(request, "user_account"), _required(request, "user_password"))
        return d.addCallback(lambda _: {})

    @defer.inlineCallbacks
    def cmd_login(self, request):
        yield self.chat.login(
            self.session,
            _required(request, "user_account"),
            _required(request, "user_password"),
            acknowledges=request.get("acks") in ("1", "true", "yes"),
            presence=request.get("presence", FULL),
        )
        self.transport.write(encode_message({"message_type": request["message_type"], "stat": "200"}))
        yield self.chat.welcome(self.session)

    def cmd_leave_message(self, request):
        self._check_own_account(request, required=False)
        self.chat.logout(self.session)
        return {}

    @pipelined
    @defer.inlineCallbacks
    def cmd_text(self, request):
        """Text to a friend (``friends``), a group (``group_id``) or the
        lobby (``group_id: all``).  Multi-line text comes as the body."""
        self._check_own_account(request)
        text = request.get("text")
        if text is None:
            try:
                text = request["body"].decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("text body is not UTF-8")
        client_id = request.get("client_id")
        if request.get("friends") is not None:
            message = yield self.chat.send_private(self.session, request["friends"], text, client_id)
        elif request.get("group_id") is not None:
            message = yield self.chat.send_room(self.session, request["group_id"], text, client_id)
        else:
            raise BadRequest("missing field: friends")
        return {"id": message.id, "time": message.create_time, "client_id": message.client_id}

    @defer.inlineCallbacks
    def cmd_upload(self, request):
        """Seed 002's file upload (``task_id``, ``user_account``, ``time``, then
        the bytes as the body); the reply names the stored file.  An optional
        ``file_name`` header gives its original name."""
        self._check_own_account(request)
        info = yield self.chat.transfers.save_file(self.session, request.get("file_name", "file"), request["body"])
        return {"file": info.name}

    def cmd_voice(self, request):
        """A voice clip (the body) for a friend who is online now."""
        self._check_own_account(request)
        return self._forward(request, "voice", body=request["body"])

    def cmd_call_key(self, request):
        """A connection key for a call to ``friends`` (``call_type``: call or
        videocall), as the cell port gives one, for a logged-in caller."""
        self._check_own_account(request)
        kind = request.get("call_type", "call")
        return {"connection_key": self.chat.calls.new_key(self.session, _required(request, "friends"), kind)}

    def cmd_call(self, request):
        """Ring ``friends`` with our key; they get ``user_account`` and ``cell_key``."""
        self._check_own_account(request)
        self.chat.calls.ring(
            self.session, _required(request, "friends"), _required(request, "cell_key"), request["message_type"]
        )
        return {}

    cmd_videocall = cmd_call

    def cmd_cell(self, request):
        """``cell_type`` 200: the callee accepts; 404: the callee rejects, or
        either party hangs up.  The other party gets ``message_type: cell``
        with ``user_account`` itself and ``friends`` us, as the seed shows."""
        self._check_own_account(request)
        answer = _required(request, "cell_type")
        if answer not in ("200", "404"):
            raise BadRequest("cell_type must be 200 or 404")
        self.chat.calls.answer_call(
            self.session, _required(request, "friends"), answer == "200", request.get("cell_key")
        )
        return {}

    def _forward(self, request, message_type, body=None, **fields):
        friend = _required(request, "friends")
        notice = Notice(message_type, {"user_account": self.session.account, **fields})
        if body:
            notice = Notice(message_type, {**notice.fields, "body": body})
        if not self.chat.router.deliver(friend, notice):
            raise NotFound("friend offline", stat=480)
        return {}

    def _check_own_account(self, request, required=True):
        """Seed messages name the sender in ``user_account``: it must be us."""
        if not self.session.logged_in:
            raise NotLoggedIn()
        account = request.get("user_account")
        if account is None and required:
            raise BadRequest("missing field: user_account")
        if account is not None and account != self.session.account:
            raise Forbidden("user_account is not the logged-in account")


def _reply_to(request):
    """What names the request in its reply: seed 002's upload has only a
    ``task_id``; anything else its ``message_type``."""
    request = request or {}
    if "message_type" not in request and "task_id" in request:
        return {"task_id": request["task_id"]}
    return {"message_type": request.get("message_type") or "error"}


def _required(request, name):
    value = request.get(name)
    if value is None:
        raise BadRequest(f"missing field: {name}")
    return value


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
