"""Who is online, told to whoever watches, at a cost that scales.

Logins and logouts are only noted when they happen (O(1)); a flush, at most
once per ``interval`` seconds (scaled down below FULL_AT watching sessions)
and otherwise in the next reactor turn, tells
every watching session what changed, with one event object per form, so each
dialect encodes it once whatever the number of recipients:

- ``full`` (seed 000's form, the default): ``update_online_user`` with the
  whole list when someone came online, ``leave_message`` per account that
  left;
- ``delta``: ``presence`` with the accounts that ``joined`` and ``left``;
  the first one after login (or after a pause) carries the whole ``online``
  list instead;
- ``friends``: nothing here; friends' ``friend_online`` / ``friend_offline``
  notices (neochat/chat/friends.py) are all the session gets.

A session that is behind (paused, see session.py) keeps only "presence
changed" and gets the current state when it catches up.

Telling N sessions costs O(N) however many changes a flush carries, so with
many online the flushes space out: the next one waits at least SPACING times
as long as the last took (its queued writes cost about as much again when
the reactor sends them), and presence keeps a bounded share of the reactor
however many are online, instead of starving logins and messages.
"""

import time

from neochat.chat.model import OnlineUsers, PresenceChange, UserLeft

FULL, DELTA, FRIENDS = "full", "delta", "friends"
FORMS = (FULL, DELTA, FRIENDS)
INTERVAL = 0.5  # seconds between two flushes, so between two full lists
FULL_AT = 1000  # watching sessions from which the whole interval applies
SPACING = 8  # the wait after a flush, in multiples of the flush's own time


class Presence:
    def __init__(self, router, reactor, interval=INTERVAL, timer=time.perf_counter):
        self.router = router
        self.reactor = reactor
        self.interval = interval
        self.timer = timer  # measures how long a flush takes
        self._flush_took = 0.0
        self._watchers = {FULL: set(), DELTA: set()}
        self._new = set()  # watchers that have not had the state yet
        self._joined, self._left = set(), set()
        self._last_flush = None
        self._call = None
        self._full = None  # the current OnlineUsers event, built on demand

    def watch(self, session):
        """``session`` (logged in, with its ``presence_form``) watches from now on."""
        if session.presence_form in self._watchers:
            self._watchers[session.presence_form].add(session)
            self._new.add(session)
            self._schedule()

    def unwatch(self, session):
        for watchers in self._watchers.values():
            watchers.discard(session)
        self._new.discard(session)

    def came_online(self, account):
        self._left.discard(account)
        self._joined.add(account)
        self._changed()

    def went_offline(self, account):
        # Told even if it came and went between two flushes: a client
        # that saw the login reply of the account may wait for its leaving.
        self._joined.discard(account)
        self._left.add(account)
        self._changed()

    def current_interval(self):
        """The full interval from FULL_AT watching sessions on; less below,
        where a full list is cheap and clients expect it at once; and at
        least SPACING times the last flush's time."""
        watching = len(self._watchers[FULL]) + len(self._watchers[DELTA])
        return max(self.interval * min(1.0, watching / FULL_AT), SPACING * self._flush_took)

    def current(self, session):
        """The whole state in ``session``'s form (after a pause)."""
        if session.presence_form == FULL:
            return self._full_list()
        return PresenceChange(online=self._full_list().accounts)

    def _changed(self):
        self._full = None
        self._schedule()

    def _full_list(self):
        if self._full is None:
            self._full = OnlineUsers(tuple(self.router.online_accounts()))
        return self._full

    def _schedule(self):
        if self._call is not None:
            return
        delay = 0
        if self._last_flush is not None:
            delay = max(0, self._last_flush + self.current_interval() - self.reactor.seconds())
        self._call = self.reactor.callLater(delay, self.flush)

    def flush(self):
        self._call = None
        started = self.timer()
        self._tell_changes()
        self._flush_took = self.timer() - started
        self._last_flush = self.reactor.seconds()

    def _tell_changes(self):
        joined, left = tuple(sorted(self._joined)), tuple(sorted(self._left))
        self._joined, self._left = set(), set()
        new, self._new = self._new, set()
        if joined or left:
            self._tell(FULL, [UserLeft(account) for account in left], ())
            if joined:
                self._tell(FULL, [self._full_list()], new)
            self._tell(DELTA, [PresenceChange(joined=joined, left=left)], new)
        for session in new:
            session.presence(self.current(session))

    def _tell(self, form, events, skip):
        for session in self._watchers[form]:
            if session not in skip:
                for event in events:
                    session.presence(event)
