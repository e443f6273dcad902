"""Operations that both dialects offer under the same ``message_type`` and
the same field names: friends, groups, history, profiles, acknowledgements.

Each dialect reads the listed fields its own way (JSON values, or header
strings), calls ``run`` with them, and encodes the resulting dict.  A field
may also go by the names a seed gives it (``aliases``: seed 002's ``grop_id``,
``number``).  Every operation needs a logged-in session.
"""

from dataclasses import dataclass, replace

from neochat.chat import inbox
from neochat.chat.errors import BadRequest, NotLoggedIn

STR, INT, IDS = "string", "integer", "list of message ids"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = STR
    required: bool = True
    aliases: tuple = ()

    def pick(self, request):
        """The field's value under its name or else an alias, None when absent;
        two names with different values are a BadRequest."""
        given = {name: request[name] for name in (self.name, *self.aliases) if request.get(name) is not None}
        if len({str(value) for value in given.values()}) > 1:
            raise BadRequest(f"{' and '.join(given)} differ: give one")
        return next(iter(given.values()), None)


@dataclass(frozen=True)
class Operation:
    name: str
    call: object  # (chat, session, **fields) -> Deferred[dict or None]
    params: tuple = ()

    def run(self, chat, session, fields):
        if not session.logged_in:
            raise NotLoggedIn()
        return self.call(chat, session, **fields)


def _optional(*names, kind=STR):
    return tuple(Param(name, kind, required=False) for name in names)


FRIEND = (Param("friend"),)
GROUP_ID = Param("group_id", aliases=("grop_id",))  # GetOldMessage(grop_id, ...) in seed 002
GROUP = (GROUP_ID,)
GROUP_MEMBER = GROUP + (Param("member"),)
PAGE_SIZE = Param("count", INT, required=False, aliases=("number",))  # GetOldMessage(..., number)

OPERATIONS = {
    operation.name: operation
    for operation in (
        Operation("friend_request", lambda c, s, friend: c.friends.request(s, friend), FRIEND),
        Operation("friend_accept", lambda c, s, friend: c.friends.accept(s, friend), FRIEND),
        Operation("friend_reject", lambda c, s, friend: c.friends.reject(s, friend), FRIEND),
        Operation("friend_remove", lambda c, s, friend: c.friends.remove(s, friend), FRIEND),
        Operation("friend_list", lambda c, s: c.friends.list(s)),
        Operation(
            "group_create",
            lambda c, s, group_id, introduction=None: c.groups.create(s, group_id, introduction or ""),
            GROUP + _optional("introduction"),
        ),
        Operation("group_info", lambda c, s, group_id: c.groups.info(s, group_id), GROUP),
        Operation("group_join", lambda c, s, group_id: c.groups.join(s, group_id), GROUP),
        Operation("group_leave", lambda c, s, group_id: c.groups.leave(s, group_id), GROUP),
        Operation("group_dissolve", lambda c, s, group_id: c.groups.dissolve(s, group_id), GROUP),
        Operation("group_invite", lambda c, s, group_id, member: c.groups.invite(s, group_id, member), GROUP_MEMBER),
        Operation("group_remove", lambda c, s, group_id, member: c.groups.remove(s, group_id, member), GROUP_MEMBER),
        Operation(
            "group_promote",
            lambda c, s, group_id, member: c.groups.set_role(s, group_id, member, "admin"),
            GROUP_MEMBER,
        ),
        Operation(
            "group_demote",
            lambda c, s, group_id, member: c.groups.set_role(s, group_id, member, "member"),
            GROUP_MEMBER,
        ),
        Operation("group_transfer", lambda c, s, group_id, member: c.groups.transfer(s, group_id, member), GROUP_MEMBER),
        Operation("group_list", lambda c, s: c.groups.mine(s)),
        Operation(
            "get_old_message",
            lambda c, s, **page: c.history(s, **page),
            _optional("with_user") + (replace(GROUP_ID, required=False),) + _optional("before_id", kind=INT)
            + (PAGE_SIZE,),
        ),
        Operation("get_message", lambda c, s, **page: inbox.take_pending(c, s, **page), (PAGE_SIZE,)),
        Operation(
            "get_user_info",
            lambda c, s, account: c.profiles.get(account),
            (Param("account", aliases=("user_account",)),),  # GetUserInfo(user_account)
        ),
        Operation("get_current_user", lambda c, s: c.profiles.get(s.account)),
        Operation(
            "set_user_info",
            lambda c, s, **changes: c.profiles.update(s, changes),
            _optional("user_name", "user_phone", "sex", "birthday", "address"),
        ),
        Operation("delete_account", lambda c, s, password: c.delete_account(s, password), (Param("password"),)),
        Operation("ack", lambda c, s, id: c.acknowledge(s, id).addCallback(lambda _: None), (Param("id", IDS),)),
    )
}
