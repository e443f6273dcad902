"""Groups with roles.  Who may do what:

- anyone logged in: create a group (and becomes its creator), join one, read
  its info;
- members: post, read history and the member list, leave (not the creator);
- admins (and the creator): invite (add) accounts, remove plain members;
- the creator: also remove admins, promote and demote, transfer ownership,
  dissolve the group.
"""

from twisted.internet import defer

from neochat.chat import audit
from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, Conflict, Forbidden, NotFound
from neochat.chat.model import Notice, now_ms
from neochat.store.database import MissingReference

CREATOR, ADMIN, MEMBER = "creator", "admin", "member"
MAX_INTRODUCTION = 200
MAX_MEMBERS = 1000  # default of the max_group_size limit


def check_group_id(group_id):
    try:
        check_account_name(group_id)
    except BadRequest:
        raise BadRequest("bad group_id")
    if group_id == "all":
        raise BadRequest("bad group_id")  # "all" names the lobby
    return group_id


class Groups:
    def __init__(self, store, router):
        self.store = store
        self.router = router
        self.max_members = MAX_MEMBERS  # 0: no limit

    @defer.inlineCallbacks
    def _role(self, group_id, account):
        """The account's role; NotFound for unknown groups."""
        check_group_id(group_id)
        role = yield self.store.groups.role(group_id, account)
        if role is None and (yield self.store.groups.info(group_id)) is None:
            raise NotFound("unknown group")
        return role

    @defer.inlineCallbacks
    def _require(self, session, group_id, *roles):
        role = yield self._role(group_id, session.account)
        if role is None:
            raise Forbidden("not a member")
        if roles and role not in roles:
            raise Forbidden(f"needs role: {' or '.join(roles)}")
        return role

    @defer.inlineCallbacks
    def _tell_members(self, group_id, message_type, extra_accounts=(), **fields):
        members = yield self.store.groups.members(group_id)
        notice = Notice(message_type, {"group_id": group_id, **fields})
        for account in {m["user_account"] for m in members} | set(extra_accounts):
            self.router.deliver(account, notice)

    # -- operations --------------------------------------------------------

    @defer.inlineCallbacks
    def create(self, session, group_id, introduction=""):
        check_group_id(group_id)
        if len(introduction) > MAX_INTRODUCTION:
            raise BadRequest("introduction too long")
        if not (yield self.store.groups.create(group_id, session.account, introduction, now_ms())):
            raise Conflict("group exists")
        return {"group_id": group_id, "permissions": CREATOR}

    @defer.inlineCallbacks
    def info(self, session, group_id):
        """Anyone sees the group's card; members also get the member list."""
        role = yield self._role(group_id, session.account)
        info = yield self.store.groups.info(group_id)
        if role is not None:
            info["members"] = yield self.store.groups.members(group_id)
        return info

    @defer.inlineCallbacks
    def join(self, session, group_id):
        if (yield self._role(group_id, session.account)) is not None:
            raise Conflict("already a member")
        yield self._add(group_id, session.account, by=session.account)
        return {"group_id": group_id, "permissions": MEMBER}

    @defer.inlineCallbacks
    def invite(self, session, group_id, account):
        yield self._require(session, group_id, CREATOR, ADMIN)
        check_account_name(account)
        if (yield self.store.groups.role(group_id, account)) is not None:
            raise Conflict("already a member")
        yield self._add(group_id, account, by=session.account)
        return {"group_id": group_id, "user_account": account}

    @defer.inlineCallbacks
    def _add(self, group_id, account, by):
        if self.max_members:
            info = yield self.store.groups.info(group_id)
            if info is not None and info["member_count"] >= self.max_members:
                audit.limit_tripped("max_group_size", None, by, group_id=group_id)
                raise Forbidden("group full")
        try:
            added = yield self.store.groups.add_member(group_id, account, now_ms())
        except MissingReference:
            raise NotFound("unknown account")
        if not added:
            raise Conflict("already a member")
        yield self._tell_members(group_id, "group_join", user_account=account, by=by)

    @defer.inlineCallbacks
    def leave(self, session, group_id):
        role = yield self._require(session, group_id)
        if role == CREATOR:
            raise Forbidden("the creator must transfer or dissolve the group")
        yield self.store.groups.remove_member(group_id, session.account)
        yield self._tell_members(group_id, "group_leave", user_account=session.account)
        return {"group_id": group_id}

    @defer.inlineCallbacks
    def remove(self, session, group_id, account):
        """Admins remove members; the creator removes admins too."""
        my_role = yield self._require(session, group_id, CREATOR, ADMIN)
        role = yield self.store.groups.role(group_id, account)
        if role is None:
            raise NotFound("not a member")
        if role == CREATOR or (role == ADMIN and my_role != CREATOR):
            raise Forbidden(f"cannot remove the {role}")
        yield self.store.groups.remove_member(group_id, account)
        yield self._tell_members(
            group_id, "group_remove", extra_accounts=[account], user_account=account, by=session.account
        )
        return {"group_id": group_id, "user_account": account}

    @defer.inlineCallbacks
    def set_role(self, session, group_id, account, role):
        """Promote (role admin) or demote (role member); creator only."""
        yield self._require(session, group_id, CREATOR)
        current = yield self.store.groups.role(group_id, account)
        if current is None:
            raise NotFound("not a member")
        if current == CREATOR:
            raise Forbidden("use group_transfer to change the creator")
        yield self.store.groups.set_role(group_id, account, role)
        yield self._tell_members(group_id, "group_role", user_account=account, permissions=role)
        return {"group_id": group_id, "user_account": account, "permissions": role}

    @defer.inlineCallbacks
    def transfer(self, session, group_id, account):
        yield self._require(session, group_id, CREATOR)
        if (yield self.store.groups.role(group_id, account)) in (None, CREATOR):
            raise NotFound("not a member")
        yield self.store.groups.transfer(group_id, session.account, account)
        yield self._tell_members(group_id, "group_transfer", user_account=account, by=session.account)
        return {"group_id": group_id, "founder": account}

    @defer.inlineCallbacks
    def dissolve(self, session, group_id):
        yield self._require(session, group_id, CREATOR)
        members = yield self.store.groups.members(group_id)
        yield self.store.groups.dissolve(group_id)
        notice = Notice("group_dissolve", {"group_id": group_id, "by": session.account})
        for member in members:
            self.router.deliver(member["user_account"], notice)
        return {"group_id": group_id}

    def mine(self, session):
        return self.store.groups.of_user(session.account).addCallback(lambda rows: {"groups": rows})

    def require_member(self, session, group_id):
        return self._require(session, group_id)
