"""The chat domain: login, presence, private and room messages, offline
delivery.  Dialects call it; it calls the store and the router.

Messages are stored by the store's group commit (neochat/store/batch.py)
and delivered only once committed; a connection that falls behind is fed
from the store (neochat/chat/session.py)."""

import itertools
import time
import uuid

from twisted.internet import defer
from twisted.logger import Logger

from neochat.chat import audit
from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, ChatError, Conflict, Forbidden, NotLoggedIn
from neochat.chat.files import references
from neochat.chat.friends import Friends
from neochat.chat.groups import Groups, check_group_id
from neochat.chat.model import (
    LOBBY, NORMAL, PRIVATE, ChatMessage, Kicked, group_conversation, private_conversation,
)
from neochat.chat.presence import FORMS, FULL, INTERVAL, Presence
from neochat.chat.profiles import Profiles, check_profile
from neochat.chat.sending import Send
from neochat.chat.session import BEHIND_DEADLINE, Session
from neochat.latency import Histogram

log = Logger()

LOBBY_NAMES = ("", "all")
MAX_CONTENT = 60 * 1024  # characters; the line limit bounds bytes anyway
# A replay reads pending messages in pages: the first small (a connection
# that falls behind again after a few wastes little), each next one twice
# as large while the connection keeps up, up to REPLAY_PAGE messages and
# about REPLAY_BYTES of text.
FIRST_REPLAY_PAGE, REPLAY_PAGE = 8, 500
REPLAY_BYTES = 1024 * 1024
HISTORY_PAGE, MAX_HISTORY_PAGE = 20, 100


class Chat:
    def __init__(self, store, router, accounts, reactor, friends_only=False, *, calls, files, transfers, clips,
                 presence_interval=INTERVAL, behind_deadline=BEHIND_DEADLINE):
        self.store = store
        self.router = router
        self.accounts = accounts
        self.reactor = reactor
        self.calls = calls  # neochat.chat.calling.Calls
        self.files = files  # neochat.chat.files.FileLibrary
        self.transfers = transfers  # neochat.chat.transfers.Transfers
        self.clips = clips  # neochat.chat.clips.VoiceSpool
        self.friends_only = friends_only
        self.friends = Friends(store, router)
        self.groups = Groups(store, router)
        self.profiles = Profiles(store.users)
        self.presence = Presence(router, reactor, presence_interval)
        self.behind_deadline = behind_deadline
        self.in_flight = set()  # Deferreds of work under way (message sends...): drain waits for them
        self._client_id_prefix = "s-" + uuid.uuid4().hex + "-"
        self._client_ids = itertools.count()
        self._written = []  # (account, message id) to drop from pending
        self._flush_call = None
        # From a message's arrival to its commit, and to its write to a live recipient
        self.commit_latency, self.delivery_latency = Histogram(), Histogram()

    # -- sessions --------------------------------------------------------

    def new_session(self, sink, peer_host):
        return Session(self, sink, peer_host)

    def register(self, account, password, profile=None, address=None):
        """``profile``: seed 002's user-table fields, stored with the account;
        ``address``: the client's, for the registration throttle."""
        self.accounts.admission.check_registration()
        registering = self._track(self.accounts.register(account, password, check_profile(profile or {}), address))
        return registering.addCallback(audit.registered, account)

    @defer.inlineCallbacks
    def login(self, session, account, password, acknowledges=False, token=None, presence=FULL):
        """Authenticate (by password or resume token) and attach; returns a
        fresh resume token.  Live events wait until ``welcome``.  ``presence``
        is the form of presence the session gets (presence.py)."""
        if session.logged_in:
            raise Conflict("already logged in")
        check_account_name(account)
        if presence not in FORMS:
            raise BadRequest(f"presence must be one of: {', '.join(FORMS)}")
        dialect = type(session.sink).__name__
        try:
            token = yield self.accounts.authenticate(account, password, session.peer_host, token)
        except ChatError as refused:
            audit.login_failed(account, session.peer_host, dialect, refused.reason)
            raise
        if session.closed:
            return
        audit.login(account, session.peer_host, dialect)
        session.account = account
        session.acknowledges = bool(acknowledges)
        session.presence_form = presence
        session.replaying = True  # until welcome has replayed the pending queue
        self.router.attach(account, session)
        return token

    def welcome(self, session):
        """After the login reply: announce presence, then replay what the
        account missed, in order, then the live events that came meanwhile."""
        if session.closed:
            return defer.succeed(None)
        self.presence.came_online(session.account)
        self.presence.watch(session)
        self._track(self.friends.announce(session.account, online=True))
        return self.replay(session)

    @defer.inlineCallbacks
    def replay(self, session):
        """Write the account's pending messages newer than the last one
        written, oldest first, as long as the connection keeps up; then the
        events that waited.  Stops when the connection falls behind: its
        ``resume`` calls this again."""
        session.replaying = True
        try:
            self._flush_written_now()  # what went out before must not come back
            yield self.store.messages.settled()  # acks and deletes just sent
            page = FIRST_REPLAY_PAGE
            while True:
                session.missed = False
                rows = yield self.store.messages.pending(session.account, session.last_id, page)
                for row in rows:
                    if session.closed or session.paused or session.holding:
                        session.missed = True
                        return
                    session.write(ChatMessage.from_row(row))
                if session.closed:
                    return
                if len(rows) < page and not session.missed:
                    break
                largest = max((len(row["message"]) for row in rows), default=1)
                page = max(1, min(2 * page, REPLAY_PAGE, REPLAY_BYTES // max(largest, 1)))
        except Exception:
            log.failure("replaying {account}'s pending messages", account=session.account)
            session.drop()  # it loses nothing: the next login replays
            return
        finally:
            session.replaying = False
        session.catch_up()

    def logout(self, session):
        """The client said goodbye (``leave_message``)."""
        self._go_offline(session, "logout")
        session.account = None

    @defer.inlineCallbacks
    def delete_account(self, session, password):
        """The account goes for good, with its files (from disk and
        database together), messages, friendships and the groups it created."""
        self._require_login(session)
        yield self.accounts.authenticate(session.account, password, session.peer_host)
        yield self._track(self.files.delete_account_files(session.account))
        yield self._track(self.store.users.delete(session.account))
        self.logout(session)
        return {}

    def disconnected(self, session):
        """The connection dropped.  The session keeps its account so that
        requests already received in full still run (nothing accepted is lost)."""
        session.closing()
        self._go_offline(session, "disconnected")

    def _go_offline(self, session, reason):
        """``reason`` ends the account's calls."""
        self.presence.unwatch(session)
        if session.account is not None and self.router.detach(session.account, session):
            audit.logout(session.account, session.peer_host, reason)
            self.calls.end_all_for(session.account, reason)
            self.presence.went_offline(session.account)
            self._track(self.friends.announce(session.account, online=False))

    def kick(self, account, reason):
        """An administrator disconnects the account (neochatctl kick, ban,
        deluser): it goes offline and is told ``reason``.  False if offline."""
        session = self.router.session_of(account)
        if session is None:
            return False
        self._go_offline(session, "kicked")
        self.kicked(session, reason)
        return True

    def kicked(self, session, reason):
        """A newer login of the same account replaced ``session``."""
        self.presence.unwatch(session)
        session.sink.send_event(Kicked(reason))
        session.account = None
        session.closing()
        session.sink.close()

    def online_accounts(self, session):
        self._require_login(session)
        return self.router.online_accounts()

    # -- messages --------------------------------------------------------

    def send_private(self, session, rece_user, content, client_id=None):
        """Deferred[ChatMessage], fired once the message is committed and
        delivered.  What is wrong with the request itself is raised at once."""
        self._require_login(session)
        check_account_name(rece_user)
        message = self._new_message(session, PRIVATE, content, client_id, rece_user=rece_user)
        checks = self._private_checks(session, message) if self.friends_only or references(content) else None
        return self._send(session, message, self._deliver_private, pending_for=(rece_user,), checks=checks)

    def send_room(self, session, room, content, client_id=None):
        """``room`` "" or "all" is the lobby of everyone online; any other
        value names a group, whose offline members get it at next login."""
        self._require_login(session)
        if room in LOBBY_NAMES:
            message = self._new_message(session, NORMAL, content, client_id)
            return self._send(session, message, self._deliver_lobby)
        message = self._new_message(session, NORMAL, content, client_id, group_id=check_group_id(room))
        checks = self._group_checks(session, message) if references(content) else None
        return self._send(session, message, self._deliver_group, group=True, checks=checks)

    def _send(self, session, message, deliver, **how):
        """Commit ``message`` in the next group commit, after the sender's
        earlier messages (sending.py); it gets its id and time, and
        ``deliver(message, stored)`` hands it out unless it is a resend."""
        return Send(self, session, message, deliver, **how).sent

    @defer.inlineCallbacks
    def _private_checks(self, session, message):
        if self.friends_only and not (yield self.friends.are_friends(session.account, message.rece_user)):
            raise Forbidden("not a friend")
        # Granted before the commit, so that messages are delivered in the
        # order they were stored.
        yield self._share_files(message, recipients=[message.rece_user])

    @defer.inlineCallbacks
    def _group_checks(self, session, message):
        yield self.groups.require_member(session, message.group_id)
        yield self._share_files(message, group_id=message.group_id)

    def _deliver_private(self, message, stored):
        audit.message(PRIVATE)
        self.router.deliver(message.rece_user, message)

    def _deliver_lobby(self, message, stored):
        audit.message(LOBBY)
        self.router.broadcast(message, exclude=message.author)

    def _deliver_group(self, message, stored):
        audit.message("group")
        for account in stored.recipients:
            self.router.deliver(account, message)

    @defer.inlineCallbacks
    def history(self, session, with_user=None, group_id=None, before_id=None, count=HISTORY_PAGE):
        """The seed's GetOldMessage: a page of a private conversation (with
        ``with_user``), a group (``group_id``, members only) or the lobby
        (neither), newest first, older than ``before_id``."""
        self._require_login(session)
        if with_user is not None and group_id is not None:
            raise BadRequest("give with_user or group_id, not both")
        if not 0 < count <= MAX_HISTORY_PAGE:
            raise BadRequest(f"count must be 1 to {MAX_HISTORY_PAGE}")
        if with_user is not None:
            conversation = private_conversation(session.account, check_account_name(with_user))
        elif group_id is not None:
            yield self.groups.require_member(session, group_id)
            conversation = group_conversation(group_id)
        else:
            conversation = LOBBY
        rows = yield self.store.messages.history(conversation, before_id or 2**62, count)
        return {"messages": [ChatMessage.from_row(row) for row in rows]}

    def acknowledge(self, session, message_ids):
        self._require_login(session)
        return self._track(self.store.messages.delivered((session.account, i) for i in message_ids))

    def written(self, session, message):
        """A message went out to ``session``: unless the client acknowledges
        by itself, it leaves the account's pending queue now."""
        if session.acknowledges:
            return
        self._written.append((session.account, message.id))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush_written)

    def _flush_written(self):
        """One transaction for everything written since the last turn."""
        self._flush_call = None
        written, self._written = self._written, []
        self._track(self.store.messages.delivered(written))

    def _flush_written_now(self):
        """The flush scheduled for the next turn, now."""
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_written()

    # -- internals -------------------------------------------------------

    def _require_login(self, session):
        if not session.logged_in:
            raise NotLoggedIn()

    def _new_message(self, session, chat_type, content, client_id, **where):
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        if len(content) > MAX_CONTENT:
            raise BadRequest("content too long")
        if client_id is None:
            # Unique (a random prefix per process, then a counter): makes a
            # retried insert idempotent.
            client_id = f"{self._client_id_prefix}{next(self._client_ids)}"
        elif not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
            raise BadRequest("bad client_id")
        return ChatMessage(
            author=session.account, chat_type=chat_type, content=content,
            client_id=client_id, arrived=time.monotonic(), **where,
        )

    def _share_files(self, message, **readers):
        """Files the text references (``<file>NAME</file>``) become readable
        by the message's recipients, if the author may read them."""
        return self._track(self.files.grant_for_message(message.author, references(message.content), **readers))

    def _track(self, deferred):
        """Keep a handle on work in flight so shutdown can wait for it."""
        self.in_flight.add(deferred)

        def done(result):
            self.in_flight.discard(deferred)
            return result

        return deferred.addBoth(done)

    @defer.inlineCallbacks
    def drain(self):
        """Finish every write already accepted (called before the pool closes)."""
        self._flush_written_now()
        while self.in_flight:
            yield defer.DeferredList(list(self.in_flight), consumeErrors=True)
