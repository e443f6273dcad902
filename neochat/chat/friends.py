"""Friend requests, friendships, and friends' presence."""

from twisted.internet import defer

from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, NotFound
from neochat.chat.model import Notice, now_ms
from neochat.store.database import MissingReference
from neochat.store.social import FRIENDS, REQUESTED


class Friends:
    def __init__(self, store, router):
        self.store = store
        self.router = router

    def _other(self, session, friend):
        check_account_name(friend)
        if friend == session.account:
            raise BadRequest("that is your own account")
        return friend

    def _tell(self, account, message_type, **fields):
        self.router.deliver(account, Notice(message_type, fields))

    @defer.inlineCallbacks
    def request(self, session, friend):
        """Ask ``friend``; if they had asked us already, we are friends now."""
        me, friend = session.account, self._other(session, friend)
        try:
            state = yield self.store.friends.request(me, friend, now_ms())
        except MissingReference:
            raise NotFound("unknown account")
        self._tell(friend, "friend_accept" if state == "friends" else "friend_request", friend=me)
        return {"friend": friend, "state": state}

    @defer.inlineCallbacks
    def accept(self, session, friend):
        me, friend = session.account, self._other(session, friend)
        if not (yield self.store.friends.accept(me, friend, now_ms())):
            raise NotFound("no friend request")
        self._tell(friend, "friend_accept", friend=me)
        return {"friend": friend, "state": "friends"}

    @defer.inlineCallbacks
    def reject(self, session, friend):
        me, friend = session.account, self._other(session, friend)
        if (yield self.store.friends.state(friend, me)) != REQUESTED:
            raise NotFound("no friend request")
        yield self.store.friends.remove(me, friend)
        self._tell(friend, "friend_reject", friend=me)
        return {"friend": friend}

    @defer.inlineCallbacks
    def remove(self, session, friend):
        """End a friendship, or withdraw a request we sent."""
        me, friend = session.account, self._other(session, friend)
        if not (yield self.store.friends.remove(me, friend)):
            raise NotFound("not a friend")
        self._tell(friend, "friend_remove", friend=me)
        return {"friend": friend}

    @defer.inlineCallbacks
    def list(self, session):
        lists = yield self.store.friends.of(session.account)
        lists["online"] = [f for f in lists["friends"] if self.router.is_online(f)]
        return lists

    @defer.inlineCallbacks
    def are_friends(self, a, b):
        return (yield self.store.friends.state(a, b)) == FRIENDS

    @defer.inlineCallbacks
    def announce(self, account, online):
        """Tell ``account``'s friends it came online or went offline."""
        for friend in (yield self.store.friends.friends(account)):
            self._tell(friend, "friend_online" if online else "friend_offline", friend=account)
