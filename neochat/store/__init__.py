"""The store: SQL through one adbapi pool.  It knows no wire dialect."""

from neochat.store.database import Database
from neochat.store.dialect import dialect_from_url
from neochat.store.files import FileStore
from neochat.store.messages import MessageStore
from neochat.store.social import FriendStore, GroupStore
from neochat.store.users import UserStore


class Store:
    def __init__(self, db):
        self.db = db
        self.users = UserStore(db)
        self.messages = MessageStore(db)
        self.friends = FriendStore(db)
        self.groups = GroupStore(db)
        self.files = FileStore(db)


__all__ = ["Database", "Store", "dialect_from_url"]
