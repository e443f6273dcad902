"""What the chat domain hands to sessions: messages and notices, dialect-free.

Each dialect turns these into its own wire form (neochat/wire/).  An event
fanned out to many sessions is encoded once per dialect: ``wire`` caches
the bytes by dialect.
"""

import time
from dataclasses import dataclass, field


def now_ms():
    return int(time.time() * 1000)


PRIVATE = "private"
NORMAL = "normal"  # a room: the lobby or a group
LOBBY = "lobby"


def private_conversation(a, b):
    first, second = sorted((a, b))
    return f"p:{first} {second}"


def group_conversation(group_id):
    return f"g:{group_id}"


@dataclass
class ChatMessage:
    author: str
    chat_type: str  # PRIVATE or NORMAL
    content: str
    client_id: str
    rece_user: str = None  # private messages
    group_id: str = None  # group messages; lobby messages have neither
    create_time: int = field(default_factory=now_ms)
    id: int = None
    wire: dict = field(default_factory=dict, compare=False, repr=False)
    # time.monotonic() when this server took the request; None for a message
    # read back from the store or from another node (not timed)
    arrived: float = field(default=None, compare=False, repr=False)

    @property
    def queued(self):
        """Private and group messages wait in their recipients' pending
        queues until delivered; lobby messages are live only."""
        return self.rece_user is not None or self.group_id is not None

    @property
    def conversation(self):
        if self.rece_user is not None:
            return private_conversation(self.author, self.rece_user)
        if self.group_id is not None:
            return group_conversation(self.group_id)
        return LOBBY

    @property
    def room(self):
        """The seed's ``rece_user`` for a room message: group id, or "all"."""
        return self.group_id if self.group_id is not None else "all"

    @classmethod
    def from_row(cls, row):
        return cls(
            id=row["id"],
            client_id=row["client_id"],
            author=row["author"],
            rece_user=row["rece_user"],
            group_id=row["group_id"],
            chat_type=row["chat_type"],
            content=row["message"],
            create_time=row["create_time"],
        )


def _wire():
    return field(default_factory=dict, compare=False, repr=False, hash=False)


@dataclass(frozen=True)
class OnlineUsers:
    """The full list of accounts online (seed 000's presence form)."""

    accounts: tuple
    wire: dict = _wire()


@dataclass(frozen=True)
class UserLeft:
    account: str
    wire: dict = _wire()


@dataclass(frozen=True)
class PresenceChange:
    """The delta presence form: who came online and who left since the last
    one; ``online`` (the whole list) instead when the client must start over."""

    joined: tuple = ()
    left: tuple = ()
    online: tuple = None
    wire: dict = _wire()


@dataclass(frozen=True)
class Kicked:
    """This session was replaced by a newer login of the same account."""

    reason: str
    wire: dict = _wire()


@dataclass(frozen=True)
class Notice:
    """A social event (friend request, group change, presence...).  Both
    dialects send it as ``message_type`` plus the same fields.  A ``body``
    field holds raw bytes, or a voice clip's spool file (chat/clips.py),
    which the dialect streams."""

    message_type: str
    fields: dict
    wire: dict = _wire()

    @property
    def size(self):
        """Bytes of a raw body held in memory (a clip from another node)."""
        body = self.fields.get("body")
        return len(body) if isinstance(body, bytes) else 0

    @property
    def clip(self):
        body = self.fields.get("body")
        return None if body is None or isinstance(body, bytes) else body
