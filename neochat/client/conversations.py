"""What the terminal client shows, without any widget: conversations (the
lobby, private chats, groups) with their messages and unread counts, and the
contact list built from friends, presence, groups and recent chats."""

from collections import deque
from dataclasses import dataclass, field

LOBBY = ("lobby", "")
KEPT = 1_000  # messages kept per conversation on screen (older: scroll back again)


def key_of(message, me):
    """The conversation a ``word`` or file message belongs to."""
    if message.get("chat_type") in ("private", "file") or message.get("message_type") == "file":
        other = message["rece_user"] if message["send_user"] == me else message["send_user"]
        return ("private", other)
    room = message.get("rece_user") or ""
    return LOBBY if room in ("", "all") else ("group", room)


def title_of(key):
    kind, name = key
    return "lobby" if kind == "lobby" else f"#{name}" if kind == "group" else name


@dataclass
class Conversation:
    key: tuple
    messages: deque = field(default_factory=lambda: deque(maxlen=KEPT))
    ids: set = field(default_factory=set)
    unread: int = 0

    def add(self, message, front=False):
        """False if it is already shown (a replay, or history we had)."""
        message_id = message.get("id")
        if message_id is not None:
            if message_id in self.ids:
                return False
            self.ids.add(message_id)
        if front:
            self.messages.appendleft(message)
        else:
            self.messages.append(message)
        return True

    @property
    def oldest_id(self):
        return min((m["id"] for m in self.messages if m.get("id") is not None), default=None)


class Conversations:
    def __init__(self, me):
        self.me = me
        self.by_key = {LOBBY: Conversation(LOBBY)}
        self.current = LOBBY
        self.friends = set()
        self.requests = []  # accounts asking to be our friend
        self.groups = set()
        self.online = set()

    def get(self, key):
        if key not in self.by_key:
            self.by_key[key] = Conversation(key)
        return self.by_key[key]

    def receive(self, message):
        """A pushed or sent message; returns its conversation's key, or None if
        it was shown already."""
        key = key_of(message, self.me)
        conversation = self.get(key)
        if not conversation.add(message):
            return None
        if key != self.current and message.get("send_user") != self.me:
            conversation.unread += 1
        return key

    def add_history(self, key, messages):
        """Older messages (newest first, as get_old_message returns them)."""
        conversation = self.get(key)
        return sum(conversation.add(message, front=True) for message in messages)

    def open(self, key):
        self.current = key
        self.get(key).unread = 0

    def contacts(self):
        """(key, label, online, unread) for the contact list: the lobby, then
        groups, then people (friends and anyone we chatted with)."""
        people = set(self.friends) | {name for kind, name in self.by_key if kind == "private"}
        keys = [LOBBY] + [("group", name) for name in sorted(self.groups | {
            name for kind, name in self.by_key if kind == "group"})]
        keys += [("private", name) for name in sorted(people)]
        rows = []
        for key in keys:
            conversation = self.by_key.get(key)
            online = key[0] == "private" and key[1] in self.online
            rows.append((key, title_of(key), online, conversation.unread if conversation else 0))
        return rows

    def neighbour(self, step):
        keys = [row[0] for row in self.contacts()]
        position = keys.index(self.current) if self.current in keys else 0
        return keys[(position + step) % len(keys)]
