"""Events that cross nodes, as JSON: chat messages (with their database id)
and notices (a voice clip's bytes in base64).  An event is encoded once,
whatever the number of nodes and recipients it goes to."""

import base64
import json

from neochat.chat.model import ChatMessage, Notice

_BYTES = "$b64"
_MESSAGE_FIELDS = ("author", "chat_type", "content", "client_id", "rece_user", "group_id", "create_time", "id")


def _plain(value):
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot send {type(value).__name__} to another node")


def encode(event):
    """``event`` as JSON text."""
    if isinstance(event, ChatMessage):
        obj = {"message": {name: getattr(event, name) for name in _MESSAGE_FIELDS}}
    elif isinstance(event, Notice):
        obj = {"notice": [event.message_type, event.fields]}
    else:
        raise TypeError(f"cannot send {type(event).__name__} to another node")
    return json.dumps(obj, default=_plain, separators=(",", ":"))


def _revive(obj):
    if len(obj) == 1 and _BYTES in obj:
        return base64.b64decode(obj[_BYTES])
    return obj


def envelope(encoded_event, **routing):
    """One channel message: ``routing`` fields plus an encoded event."""
    head = json.dumps(routing, separators=(",", ":"))
    return f'{head[:-1]},"event":{encoded_event}}}'


def open_envelope(text):
    """(routing fields, event): the inverse of ``envelope``."""
    payload = json.loads(text, object_hook=_revive)
    obj = payload.pop("event")
    if "message" in obj:
        return payload, ChatMessage(**obj["message"])
    message_type, fields = obj["notice"]
    return payload, Notice(message_type, fields)
