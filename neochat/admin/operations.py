"""Every ``neochatctl`` verb that reads or changes the server's state.

One ``Administration`` serves both ways of running them: inside the server
(behind the admin socket, with the live sessions: ``live`` is set) and
offline, straight on the database when no server runs.  Verbs return
JSON-ready values and raise ``ChatError`` subclasses for refusals.
"""

import inspect
import time
from dataclasses import dataclass

from twisted.internet import defer, threads
from twisted.logger import Logger

from neochat.chat import audit
from neochat.chat.accounts import MAX_PASSWORD, check_account_name
from neochat.chat.admission import ACCOUNT, ADDRESS, REGISTRATION, network
from neochat.chat.errors import BadRequest, ChatError, Conflict, NotFound
from neochat.chat.groups import ADMIN, CREATOR, MEMBER, check_group_id
from neochat.chat.model import now_ms

log = Logger()

LIST_LIMIT = 1000
ROLES = (CREATOR, ADMIN, MEMBER)


class NotRunning(NotFound):
    """A verb that needs the running server was run offline."""

    def __init__(self):
        super().__init__("needs the running server")


@dataclass
class Live:
    """The running server's parts the live verbs need."""

    chat: object  # neochat.chat.domain.Chat
    connections: tuple  # services.listening.Connections of the message port and the WebSocket gateway
    calls: object  # callable: {"calls": n, ...relay counters}
    cluster: object = None  # a cluster node's ClusterRouter: online, kick and stats cover every node


class Administration:
    def __init__(self, store, admin_store, accounts, files, live=None):
        self.store = store
        self.admin_store = admin_store
        self.accounts = accounts
        self.files = files
        self.live = live
        self._reloads = defer.DeferredLock()  # one admission reload at a time: the last read is the last loaded
        if live is not None and live.cluster is not None:  # what the other nodes ask this one
            live.cluster.answer("admin_online", lambda node: self._online_here())
            live.cluster.answer("admin_kick", lambda node, **args: self._kick_here(**args))
            live.cluster.answer("admin_stats", lambda node: self._live_counts_here())
            live.cluster.answer("admin_admission", lambda node: self._admission_here())
            live.cluster.when_subscribed(self._admission_missed)

    # -- accounts --------------------------------------------------------

    @defer.inlineCallbacks
    def adduser(self, account, password):
        """Works while registration is closed: the administrator adds people."""
        yield self.accounts.register(account, password)
        log.info("account {account} added by the administrator", account=account, audit="adduser")
        return {"account": account}

    @defer.inlineCallbacks
    def passwd(self, account, password):
        check_account_name(account)
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            raise BadRequest("bad password")
        hashed = yield threads.deferToThread(self.accounts.hasher.hash, password)
        if not (yield self.admin_store.set_password_hash(account, hashed)):
            raise NotFound("unknown account")
        log.info("password of {account} changed by the administrator", account=account, audit="passwd")
        return {"account": account}

    @defer.inlineCallbacks
    def deluser(self, account):
        """The account goes with its files, as the protocol's delete_account."""
        check_account_name(account)
        if not (yield self.store.users.existing([account])):
            raise NotFound("unknown account")
        self._kick(account, "account deleted")
        files = yield self.files.delete_account_files(account)
        yield self.store.users.delete(account)
        log.info("account {account} deleted by the administrator with {files} files",
                 account=account, files=files, audit="deluser")
        return {"account": account, "files": files}

    @defer.inlineCallbacks
    def users(self, search="", limit=LIST_LIMIT):
        rows = yield self.admin_store.users(search, limit)
        online = set(self.live.chat.router.online_accounts()) if self.live else set()
        for row in rows:
            row["online"] = row["user_account"] in online if self.live else None
        return rows

    # -- sessions (live only) --------------------------------------------

    # In a cluster, the node whose socket was asked asks every node (or the
    # account's) through Redis (cluster/asking.py), and adds the node names.

    @defer.inlineCallbacks
    def online(self):
        cluster = self._live().cluster
        if cluster is None:
            return self._online_here()
        rows = []
        for node, answered, result in (yield cluster.ask_everywhere("admin_online")):
            if not answered:
                result.raiseException()  # an online list missing a node would mislead
            rows += [dict(row, node=node) for row in result]
        return sorted(rows, key=lambda row: row["account"])

    def _online_here(self):
        return [{"account": session.account, "address": session.peer_host} for session in self._sessions_here()]

    def _sessions_here(self):
        router = self._live().chat.router
        sessions = (router.session_of(account) for account in router.online_accounts())
        return [session for session in sessions if session is not None]  # a cluster's others are elsewhere

    def kick(self, account, reason="kicked by the administrator"):
        cluster = self._live().cluster
        if cluster is None:
            return self._kick_here(account, reason)
        node = cluster.node_of(account)
        if node is None:
            raise NotFound("not online")
        return cluster.ask(node, "admin_kick", account=account, reason=reason)

    def _kick_here(self, account, reason):
        if not self._kick(account, reason):
            raise NotFound("not online")
        audit.kicked(account, reason)
        if self.live.cluster is None:
            return {"account": account}
        return {"account": account, "node": self.live.cluster.node_id}

    def _kick(self, account, reason):
        return self.live is not None and self.live.chat.kick(account, reason)

    # -- bans and registration -------------------------------------------

    # They are kept in the database.  After a change, every node (in a
    # cluster: this one, then the others through Redis) reloads them and
    # drops what they now refuse; a node that was not listening reloads
    # them when its subscription is back.

    @defer.inlineCallbacks
    def ban(self, kind, target, reason=""):
        target = self._ban_target(kind, target)
        added = yield self.admin_store.add_ban(kind, target, reason, now_ms())
        applied = yield self._admission_changed()
        audit.banned(kind, target, reason, applied["disconnected"])
        return dict({"kind": kind, "target": target, "new": added}, **applied)

    @defer.inlineCallbacks
    def unban(self, kind, target):
        target = self._ban_target(kind, target)
        if not (yield self.admin_store.remove_ban(kind, target)):
            raise NotFound(f"{kind} not banned")
        applied = yield self._admission_changed()
        log.info("{kind} {target} unbanned", kind=kind, target=target, audit="unban")
        return dict({"kind": kind, "target": target}, **self._nodes_only(applied))

    def bans(self):
        return self.admin_store.bans()

    @staticmethod
    def _ban_target(kind, target):
        if kind == ACCOUNT:
            return check_account_name(target)
        if kind != ADDRESS:
            raise BadRequest("ban an account or an address")
        try:
            return str(network(target))
        except ValueError:
            raise BadRequest(f"not an IP address or network: {target}") from None

    @defer.inlineCallbacks
    def registration(self, state=None):
        """Read, or set to "open" or "closed"; kept in the database."""
        applied = {}
        if state is not None:
            if state not in ("open", "closed"):
                raise BadRequest("registration is open or closed")
            yield self.admin_store.set_setting(REGISTRATION, state)
            applied = yield self._admission_changed()
            log.info("registration {state}", state=state, audit="registration_setting")
        stored = yield self.admin_store.settings()
        return dict({"registration": stored.get(REGISTRATION, "open")}, **self._nodes_only(applied))

    def reload_admission(self):
        """Bans and the registration state as the database has them now."""
        return self._reloads.run(self._load_admission)

    @defer.inlineCallbacks
    def _load_admission(self):
        bans = yield self.admin_store.bans()
        self.accounts.admission.load(bans, (yield self.admin_store.settings()))

    @defer.inlineCallbacks
    def _admission_changed(self):
        """{"disconnected": n}, and in a cluster "nodes": each node's count
        or error.  Fails (naming what is done) if the others were not told."""
        if self.live is None:
            return {"disconnected": 0}
        here = yield self._admission_here()
        cluster = self.live.cluster
        if cluster is None:
            return here
        try:
            answers = yield cluster.ask_everywhere("admin_admission", here=False)
        except ChatError as error:
            raise ChatError(f"stored, and applied on {cluster.node_id} only: {error.reason}", error.stat) from None
        nodes = [dict(node=cluster.node_id, **here)] + node_rows(answers)
        return {"disconnected": sum(row.get("disconnected", 0) for row in nodes),
                "nodes": sorted(nodes, key=lambda row: row["node"])}

    @defer.inlineCallbacks
    def _admission_here(self):
        yield self.reload_admission()
        return {"disconnected": self._drop_refused_here()}

    def _admission_missed(self):
        self._admission_here().addErrback(lambda failure: log.failure("reloading bans failed", failure))

    @staticmethod
    def _nodes_only(applied):
        """Where nobody is dropped, only the nodes that applied it are worth telling."""
        return {"nodes": applied["nodes"]} if "nodes" in applied else {}

    def _drop_refused_here(self):
        """Refuse every open connection, TCP or WebSocket, from a banned
        address (403 address banned), and kick the banned accounts still
        logged in: how many."""
        admission = self.accounts.admission
        dropped = 0
        for connections in self.live.connections:
            for connection in list(connections):
                if admission.address_banned(connection.transport.getPeer().host):
                    connection.refuse(403, "address banned")
                    dropped += 1
        for session in self._sessions_here():
            if admission.account_banned(session.account) and not admission.address_banned(session.peer_host):
                dropped += int(self._kick(session.account, "account banned"))
        return dropped

    # -- groups ----------------------------------------------------------

    def groups(self, search="", limit=LIST_LIMIT):
        return self.admin_store.groups(search, limit)

    @defer.inlineCallbacks
    def group_show(self, group_id):
        info = yield self.store.groups.info(check_group_id(group_id))
        if info is None:
            raise NotFound("unknown group")
        info["members"] = yield self.store.groups.members(group_id)
        return info

    @defer.inlineCallbacks
    def group_create(self, group_id, owner, introduction=""):
        check_group_id(group_id)
        if not (yield self.store.users.existing([check_account_name(owner)])):
            raise NotFound("unknown account")
        if not (yield self.store.groups.create(group_id, owner, introduction, now_ms())):
            raise Conflict("group exists")
        log.info("group {group_id} created for {owner}", group_id=group_id, owner=owner, audit="group_create")
        return {"group_id": group_id, "founder": owner}

    @defer.inlineCallbacks
    def group_delete(self, group_id):
        if not (yield self.store.groups.dissolve(check_group_id(group_id))):
            raise NotFound("unknown group")
        log.info("group {group_id} deleted", group_id=group_id, audit="group_delete")
        return {"group_id": group_id}

    @defer.inlineCallbacks
    def group_role(self, group_id, account, role):
        """Make a member creator (the old creator becomes an admin), admin or member."""
        if role not in ROLES:
            raise BadRequest(f"role is one of {', '.join(ROLES)}")
        current = yield self.store.groups.role(check_group_id(group_id), check_account_name(account))
        if current is None:
            raise NotFound("not a member (or unknown group)")
        if role == CREATOR:
            info = yield self.store.groups.info(group_id)
            yield self.store.groups.transfer(group_id, info["founder"], account)
        elif current == CREATOR:
            raise BadRequest("give the group another creator first")
        else:
            yield self.store.groups.set_role(group_id, account, role)
        return {"group_id": group_id, "account": account, "role": role}

    # -- numbers ---------------------------------------------------------

    @defer.inlineCallbacks
    def stats(self):
        midnight = time.mktime(time.localtime()[:3] + (0, 0, 0, 0, 0, -1))
        counts = yield self.admin_store.counts(int(midnight * 1000))
        if self.live is None:
            return counts
        if self.live.cluster is None:
            counts.update(self._live_counts_here())
            return counts
        counts["nodes"] = node_rows((yield self.live.cluster.ask_everywhere("admin_stats")))
        for row in counts["nodes"]:
            for name, number in row.items():
                if name not in ("node", "error"):
                    counts[name] = counts.get(name, 0) + number
        return counts

    def _live_counts_here(self):
        """This node's sessions, connections, calls and relay counters."""
        counts = {"online": len(self._sessions_here()),
                  "connections": sum(len(connections) for connections in self.live.connections)}
        counts.update(self.live.calls())
        return counts

    def _live(self):
        if self.live is None:
            raise NotRunning()
        return self.live


VERBS = {
    "adduser": Administration.adduser, "passwd": Administration.passwd,
    "deluser": Administration.deluser, "users": Administration.users,
    "online": Administration.online, "kick": Administration.kick,
    "ban": Administration.ban, "unban": Administration.unban, "bans": Administration.bans,
    "registration": Administration.registration,
    "groups": Administration.groups, "group_show": Administration.group_show,
    "group_create": Administration.group_create, "group_delete": Administration.group_delete,
    "group_role": Administration.group_role, "stats": Administration.stats,
}


def node_rows(answers):
    """ask_everywhere's answers as rows: {"node": id, **result}, or {"node": id, "error": why}."""
    return [dict(node=node, **result) if answered else {"node": node, "error": result.getErrorMessage()}
            for node, answered, result in answers]


def run(administration, verb, arguments):
    """Deferred: ``verb`` with keyword ``arguments``; BadRequest for unknown
    verbs or arguments."""
    function = VERBS.get(verb)
    if function is None:
        return defer.fail(BadRequest(f"unknown command {verb!r}"))
    try:
        inspect.signature(function).bind(administration, **arguments)
    except TypeError as error:
        return defer.fail(BadRequest(f"{verb}: {error}"))
    return defer.maybeDeferred(function, administration, **arguments)
