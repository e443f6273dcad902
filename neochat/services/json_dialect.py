"""The JSON dialect of seed 000, field names exactly as the seed has them."""

from twisted.internet import defer

import base64
from functools import partial

from neochat.chat.errors import BadRequest, Forbidden, NotLoggedIn
from neochat.chat.model import NORMAL, PRIVATE, ChatMessage, Kicked, Notice, OnlineUsers, UserLeft
from neochat.chat.operations import IDS, INT, OPERATIONS
from neochat.services.dialect import Dialect, field

JSON_KINDS = {INT: int, IDS: list}
from neochat.wire.json_stream import JsonStreamDecoder, Malformed, encode


class JsonDialect(Dialect):
    def __init__(self, transport, chat, peer_host):
        super().__init__(transport, chat, peer_host)
        self.decoder = JsonStreamDecoder()

    # -- framing -----------------------------------------------------------

    def feed(self, data):
        self.decoder.feed(data)

    def next_item(self):
        return self.decoder.next_item()

    def buffered(self):
        return self.decoder.buffered()

    def handle_item(self, item):
        if isinstance(item, Malformed):
            raise BadRequest(item.reason)
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
            value = field(request, param.name, JSON_KINDS.get(param.kind, str), required=param.required)
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

    # -- commands ----------------------------------------------------------

    @defer.inlineCallbacks
    def cmd_register(self, request):
        yield self.chat.register(field(request, "username"), field(request, "password"))
        return {"message_type": "register", "content": "success"}

    @defer.inlineCallbacks
    def cmd_login(self, request):
        yield self.chat.login(
            self.session,
            field(request, "username"),
            field(request, "password"),
            acknowledges=field(request, "acks", bool, default=False, required=False),
        )
        self.transport.write(encode({"message_type": "login", "content": "success"}))
        yield self.chat.welcome(self.session)

    def cmd_leave_message(self, request):
        self._check_own_name(request, "username", required=False)
        self.chat.logout(self.session)

    @defer.inlineCallbacks
    def cmd_word(self, request):
        chat_type = field(request, "chat_type")
        self._check_own_name(request, "send_user")
        content = field(request, "content")
        client_id = field(request, "client_id", required=False)
        if chat_type == PRIVATE:
            message = yield self.chat.send_private(
                self.session, field(request, "rece_user"), content, client_id
            )
        elif chat_type == NORMAL:
            room = field(request, "rece_user", default="", required=False)
            message = yield self.chat.send_room(self.session, room, content, client_id)
        else:
            raise BadRequest("unknown chat_type")
        if self.session.acknowledges:
            return {
                "message_type": "word",
                "content": "success",
                "id": message.id,
                "time": message.create_time,
                "client_id": message.client_id,
            }

    def cmd_voice(self, request):
        """Seed 000 voice chat: the caller's ``request``, the callee's ``accept``
        or ``reject`` (both name the caller in ``send_user``, as the seed's accept
        does), and ``close`` from either.  Success has no reply."""
        content = field(request, "content")
        calls = self.chat.calls
        if content == "request":
            self._check_own_name(request, "send_user")
            calls.request_voice(self.session, field(request, "rece_user"))
        elif content in ("accept", "reject"):
            self._check_own_name(request, "rece_user")
            calls.answer_voice(self.session, field(request, "send_user"), content == "accept")
        elif content == "close":
            named = [field(request, name, required=False) for name in ("send_user", "rece_user")]
            calls.close_voice(self.session, [name for name in named if name is not None])
        else:
            raise BadRequest("unknown content")

    def _check_own_name(self, request, name, required=True):
        """The seed repeats the sender's name in requests: it must be ours."""
        value = field(request, name, required=required)
        if not self.session.logged_in:
            raise NotLoggedIn()
        if value is not None and value != self.session.account:
            raise Forbidden(f"{name} is not the logged-in account")


def event_to_json(event):
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
