"""Who is online, and delivering to them: the seam a multi-node router
(Redis pub/sub) replaces.

A router maps accounts to live sessions.  A session is anything with
``push(event)`` and ``kick(reason)``.  One session per account: a newer login
replaces the older one (see docs/protocol.md, "second login").

The interface, which any router implements:

- ``attach(account, session)``: the account's session from now on; kicks
  the one it replaces;
- ``detach(account, session)``: forget it; True if the account went offline;
- ``is_online(account)``, ``session_of(account)``, ``online_accounts()``
  (sorted);
- ``deliver(account, event)``: push to the account's session; False if it
  is offline (raises the session's ChatError, e.g. a voice clip to a
  session that is not reading);
- ``broadcast(event, exclude=None)``: push to every session but
  ``exclude``'s.

Events are delivered only after they are committed (for stored messages),
and each event object is shared by all its recipients, so that a dialect
encodes it once.
"""


class LocalRouter:
    """Every session lives in this process."""

    def __init__(self):
        self._sessions = {}

    def attach(self, account, session):
        """Make ``session`` the account's session; kick the one it replaces."""
        previous = self._sessions.get(account)
        self._sessions[account] = session
        if previous is not None and previous is not session:
            previous.kick("logged in from another connection")

    def detach(self, account, session):
        """Forget ``session`` unless a newer login has replaced it already.
        True if the account went offline."""
        if self._sessions.get(account) is session:
            del self._sessions[account]
            return True
        return False

    def is_online(self, account):
        return account in self._sessions

    def session_of(self, account):
        """The account's live session, or None (calls need its peer address)."""
        return self._sessions.get(account)

    def online_accounts(self):
        return sorted(self._sessions)

    def deliver(self, account, event):
        """Push ``event`` to the account's session; False if it is offline."""
        session = self._sessions.get(account)
        if session is None:
            return False
        session.push(event)
        return True

    def broadcast(self, event, exclude=None):
        for account, session in list(self._sessions.items()):
            if account != exclude:
                session.push(event)
