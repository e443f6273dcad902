"""Friendships (seed 002's UserRelationship) and groups (Group, GroupUser).

A friend request is the row (requester, friend) with is_relationship 0;
an accepted friendship is a row each way with is_relationship 1.
"""

from neochat.store.database import MissingReference, marks
from neochat.store.reads import BatchedRead

REQUESTED, FRIENDS = 0, 1


class FriendStore:
    def __init__(self, db):
        self.db = db
        self._friends = BatchedRead(db.reactor, self._friends_of_many, missing=[])

    def state(self, account, other):
        """Deferred[int or None]: is_relationship of the row account -> other."""
        return self.db.run(self._state, account, other)

    @staticmethod
    def _state(txn, account, other):
        return txn.execute(
            "SELECT is_relationship FROM friendships WHERE user_account = ? AND friend_account = ?",
            (account, other),
        ).scalar()

    @staticmethod
    def _unlink(txn, a, b):
        """Delete the rows between a and b, either way; returns how many."""
        return txn.execute(
            "DELETE FROM friendships WHERE (user_account = ? AND friend_account = ?)"
            " OR (user_account = ? AND friend_account = ?)",
            (a, b, b, a),
        ).rowcount

    def request(self, requester, friend, now_ms):
        """Deferred[str]: "requested", or "friends" when ``friend`` had asked first."""
        return self.db.run(self._request, requester, friend, now_ms)

    def _request(self, txn, requester, friend, now_ms):
        if self._state(txn, friend, requester) is not None:
            self._befriend(txn, requester, friend, now_ms)
            return "friends"
        try:
            txn.execute(
                "INSERT INTO friendships (user_account, friend_account, is_relationship, bind_time)"
                " VALUES (?, ?, ?, ?)",
                (requester, friend, REQUESTED, now_ms),
            )
        except Exception as error:
            if self.db.dialect.is_missing_reference(error):
                raise MissingReference(friend) from error
            if not self.db.dialect.is_unique_violation(error):
                raise
        return "requested"

    def accept(self, account, requester, now_ms):
        """Deferred[bool]: False if ``requester`` had not asked."""
        def accept(txn):
            if self._state(txn, requester, account) is None:
                return False
            self._befriend(txn, account, requester, now_ms)
            return True

        return self.db.run(accept)

    def _befriend(self, txn, a, b, now_ms):
        self._unlink(txn, a, b)
        txn.executemany(
            "INSERT INTO friendships (user_account, friend_account, is_relationship, bind_time)"
            " VALUES (?, ?, ?, ?)",
            [(a, b, FRIENDS, now_ms), (b, a, FRIENDS, now_ms)],
        )

    def remove(self, a, b):
        """Deferred[int]: rows removed (a request either way, or a friendship)."""
        return self.db.run(self._unlink, a, b)

    def of(self, account):
        """Deferred[dict]: friends, requests sent (outgoing), requests received (incoming)."""
        def select(txn):
            mine = txn.execute(
                "SELECT friend_account, is_relationship FROM friendships WHERE user_account = ?"
                " ORDER BY friend_account",
                (account,),
            ).fetchall()
            incoming = txn.execute(
                "SELECT user_account FROM friendships WHERE friend_account = ? AND is_relationship = ?"
                " ORDER BY user_account",
                (account, REQUESTED),
            ).fetchall()
            return {
                "friends": [other for other, state in mine if state == FRIENDS],
                "outgoing": [other for other, state in mine if state == REQUESTED],
                "incoming": [row[0] for row in incoming],
            }

        return self.db.run(select)

    def friends(self, account):
        """Deferred[list]: ``account``'s friends, sorted.  Logins and logouts
        that come together (announcing themselves) read them in one query."""
        return self._friends.get(account)

    def _friends_of_many(self, accounts):
        def select(txn):
            rows = txn.execute(
                "SELECT user_account, friend_account FROM friendships"
                f" WHERE user_account IN ({marks(accounts)}) AND is_relationship = ? ORDER BY friend_account",
                [*accounts, FRIENDS],
            ).fetchall()
            friends = {}
            for account, friend in rows:
                friends.setdefault(account, []).append(friend)
            return friends

        return self.db.read(select)


class GroupStore:
    def __init__(self, db):
        self.db = db

    def create(self, group_id, founder, introduction, now_ms):
        """Deferred[bool]: False if the id is taken.  The founder is its creator."""
        def create(txn):
            try:
                txn.execute(
                    "INSERT INTO chat_groups (group_id, founder, introduction, create_time)"
                    " VALUES (?, ?, ?, ?)",
                    (group_id, founder, introduction, now_ms),
                )
            except Exception as error:
                if not self.db.dialect.is_unique_violation(error):
                    raise
                return txn.execute(
                    "SELECT founder FROM chat_groups WHERE group_id = ?", (group_id,)
                ).scalar() == founder and self._role(txn, group_id, founder) == "creator"
            txn.execute(
                "INSERT INTO group_users (group_id, user_account, join_time, permissions)"
                " VALUES (?, ?, ?, ?)",
                (group_id, founder, now_ms, "creator"),
            )
            return True

        return self.db.run(create)

    def info(self, group_id):
        """Deferred[dict or None]."""
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT g.group_id, g.founder, g.introduction, g.create_time,"
                " (SELECT COUNT(*) FROM group_users u WHERE u.group_id = g.group_id) AS member_count"
                " FROM chat_groups g WHERE g.group_id = ?",
                (group_id,),
            ).dict()
        )

    @staticmethod
    def _role(txn, group_id, account):
        return txn.execute(
            "SELECT permissions FROM group_users WHERE group_id = ? AND user_account = ?",
            (group_id, account),
        ).scalar()

    def role(self, group_id, account):
        """Deferred[str or None]: creator, admin, member, or None for outsiders."""
        return self.db.run(self._role, group_id, account)

    def members(self, group_id):
        """Deferred[list of {user_account, permissions, join_time}]."""
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT user_account, permissions, join_time FROM group_users WHERE group_id = ?"
                " ORDER BY join_time, user_account",
                (group_id,),
            ).dicts()
        )

    def add_member(self, group_id, account, now_ms):
        """Deferred[bool]: False if already a member."""
        def add(txn):
            try:
                txn.execute(
                    "INSERT INTO group_users (group_id, user_account, join_time, permissions)"
                    " VALUES (?, ?, ?, ?)",
                    (group_id, account, now_ms, "member"),
                )
            except Exception as error:
                if self.db.dialect.is_missing_reference(error):
                    raise MissingReference(account) from error
                if not self.db.dialect.is_unique_violation(error):
                    raise
                return False
            return True

        return self.db.run(add)

    def remove_member(self, group_id, account):
        return self.db.run(
            lambda txn: txn.execute(
                "DELETE FROM group_users WHERE group_id = ? AND user_account = ?", (group_id, account)
            ).rowcount
        )

    def set_role(self, group_id, account, role):
        return self.db.run(
            lambda txn: txn.execute(
                "UPDATE group_users SET permissions = ? WHERE group_id = ? AND user_account = ?",
                (role, group_id, account),
            ).rowcount
        )

    def transfer(self, group_id, creator, new_creator):
        """The new creator takes over; the old one stays on as an admin."""
        def transfer(txn):
            txn.execute(
                "UPDATE group_users SET permissions = ? WHERE group_id = ? AND user_account = ?",
                ("admin", group_id, creator),
            )
            txn.execute(
                "UPDATE group_users SET permissions = ? WHERE group_id = ? AND user_account = ?",
                ("creator", group_id, new_creator),
            )
            txn.execute("UPDATE chat_groups SET founder = ? WHERE group_id = ?", (new_creator, group_id))

        return self.db.run(transfer)

    def dissolve(self, group_id):
        """Deferred: the group goes, and with it (by cascade) its members,
        messages and their pending copies."""
        return self.db.run(
            lambda txn: txn.execute("DELETE FROM chat_groups WHERE group_id = ?", (group_id,)).rowcount
        )

    def of_user(self, account):
        """Deferred[list of {group_id, permissions}]: the groups ``account`` is in."""
        return self.db.run(
            lambda txn: txn.execute(
                "SELECT group_id, permissions FROM group_users WHERE user_account = ? ORDER BY group_id",
                (account,),
            ).dicts()
        )
