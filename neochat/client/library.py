"""The NeoChat client library: one logged-in session that survives lost
connections, with the seed-002 plugin API in Python names.

``NeoChatClient`` keeps a ``ClientService`` connected (jittered exponential
backoff), logs in with ``acks`` after every (re)connect, and then:

- resends its outbox: every ``send_message`` carries a ``client_id`` and stays
  queued until the server's receipt, so a message is never lost and, as the
  server stores a ``client_id`` once, never doubled;
- acknowledges each received message after handing it to the inbox and the
  subscribers; the server keeps what was not acknowledged and replays it at
  the next login (the catch-up), and ids already seen are dropped here;
- fetches the lobby's recent history after a reconnect, since the server
  queues nothing of the lobby.

Every call returns a Deferred.  Operations wait for the session to be logged
in; one whose connection drops before the reply fails with ``ConnectionLost``.
"""

import uuid
from collections import OrderedDict, deque

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from neochat.client.calls import Calls
from neochat.client.connection import ClientConnection, LimitReached, RequestFailed
from neochat.client.ftp import FtpFiles
from neochat.client.transfers import FileTransfers

INBOX_LIMIT = 10_000  # messages kept for get_message(); the oldest go first
OUTBOX_LIMIT = 1_000  # messages waiting for their receipt
WAITING_LIMIT = 1_000  # operations waiting for the session to log in
SEEN_LIMIT = 4_096  # message ids remembered to drop replays
# Pushes that only report who is online: they update ``online``, not the inbox.
PRESENCE = {"update_online_user", "leave_message", "friend_online", "friend_offline"}
CATCH_UP = 100  # lobby messages fetched after a reconnect
FATAL_LOGIN = {"wrong account or password", "bad account name", "bad password"}


log = Logger()


class ClientStopped(Exception):
    """The client was stopped, kicked by a newer login, or refused its login."""


def register(reactor, host, port, account, password):
    """Create an account over a connection of its own; fires with the reply."""
    connection = ClientConnection(on_push=lambda message: None)
    endpoint = HostnameEndpoint(reactor, host, port)

    @defer.inlineCallbacks
    def run(protocol):
        try:
            return (yield protocol.request({"message_type": "register", "username": account, "password": password}))
        finally:
            protocol.transport.loseConnection()

    return endpoint.connect(Factory.forProtocol(lambda: connection)).addCallback(run)


class _Outgoing:
    def __init__(self, message):
        self.message = message
        self.done = defer.Deferred()
        self.sent_on = None


class NeoChatClient(FileTransfers):
    def __init__(self, reactor, host, port, account, password, retry=None, ftp_port=2121, ftp_tls=False):
        self.reactor = reactor
        self.account = account
        self._password = password
        self.online = set()
        self._inbox = deque(maxlen=INBOX_LIMIT)
        self._subscribers = []
        self._watchers = []  # told "connected" or "reconnecting"
        self._outbox = OrderedDict()  # client_id -> _Outgoing
        self._seen = OrderedDict()  # message id -> None, oldest first
        self._lobby_seen = None  # the newest lobby message id received
        self._acks = {}  # connection -> ids to acknowledge this reactor turn
        self._waiting = []  # Deferreds for the next logged-in connection
        self._connection = None  # the logged-in connection
        self._stopped = None  # the reason, once stopped for good
        self._sending_file = defer.DeferredLock()
        self.logged_in = defer.Deferred()  # the first login
        factory = Factory()
        factory.buildProtocol = lambda address: self._new_connection()
        self._service = ClientService(
            HostnameEndpoint(reactor, host, port), factory,
            retryPolicy=retry or backoffPolicy(initialDelay=0.5, maxDelay=30),
            clock=reactor, prepareConnection=self._login,
        )
        self.calls = Calls(self)
        self.ftp = FtpFiles(reactor, host, ftp_port, account, password, ftp_tls)

    # -- life cycle ----------------------------------------------------------

    def start(self):
        """Connect and log in; fires once logged in (fails if refused)."""
        self._service.startService()
        return self.logged_in

    def stop(self, reason="client stopped"):
        if self._stopped is None:
            self._stopped = reason
            if not self.logged_in.called:
                self.logged_in.errback(ClientStopped(reason))
            self._fail_waiting(ClientStopped(reason))
            for entry in self._outbox.values():
                entry.done.errback(ClientStopped(reason))
            self._outbox.clear()
        return self._service.stopService() if self._service.running else defer.succeed(None)

    def _new_connection(self):
        connection = ClientConnection(on_push=None, on_lost=lambda reason: self._lost(connection))
        connection.on_push = lambda message: self._pushed(connection, message)
        return connection

    @defer.inlineCallbacks
    def _login(self, proxy):
        connection = proxy.itself()  # ClientService hands us a proxy of the connection
        try:
            yield connection.request({"message_type": "login", "username": self.account,
                                      "password": self._password, "acks": True})
        except RequestFailed as failure:
            if failure.reason in FATAL_LOGIN:
                self.reactor.callLater(0, self.stop, failure.reason)
                if not self.logged_in.called:
                    self.logged_in.errback(failure)
            raise
        # Once ClientService has taken the connection as ready, not before.
        self.reactor.callLater(0, self._ready, connection)

    def _ready(self, connection):
        if connection.lost or self._stopped is not None:
            return
        self._connection = connection
        for entry in self._outbox.values():
            self._send_outgoing(connection, entry)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(connection)
        if not self.logged_in.called:
            self.logged_in.callback(self)
        else:
            self._tell_watchers("connected")
            if self._lobby_seen is not None:
                self._catch_up_lobby(connection)

    @defer.inlineCallbacks
    def _catch_up_lobby(self, connection):
        """The lobby is live only (the server queues nothing of it): after a
        reconnect, fetch what was said in it while we were away."""
        try:
            reply = yield connection.request({"message_type": "get_old_message", "count": CATCH_UP})
        except (RequestFailed, ConnectionLost):
            return  # the next reconnect tries again
        for message in reversed(reply["messages"]):
            if message["id"] > self._lobby_seen:
                self._deliver(message)

    def _lost(self, connection):
        if self._connection is connection:
            self._connection = None
            self.online.clear()
            self.calls.end_all("disconnected")
            if self._stopped is None:
                self._tell_watchers("reconnecting")
        self._acks.pop(connection, None)

    @property
    def connection(self):
        """The logged-in connection, or None while (re)connecting."""
        return self._connection

    def _connected(self):
        if self._stopped is not None:
            return defer.fail(ClientStopped(self._stopped))
        if self._connection is not None:
            return defer.succeed(self._connection)
        if len(self._waiting) >= WAITING_LIMIT:
            return defer.fail(LimitReached(f"{WAITING_LIMIT} requests already wait for the connection"))
        waiter = defer.Deferred()
        self._waiting.append(waiter)
        return waiter

    def _fail_waiting(self, error):
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(error)

    # -- pushes, the inbox, acknowledgements --------------------------------

    def subscribe(self, callback):
        """``callback(message)`` for every pushed message; returns a function
        that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def watch_connection(self, callback):
        """``callback("reconnecting")`` when the connection drops and
        ``callback("connected")`` once logged in again."""
        self._watchers.append(callback)

    def _tell_watchers(self, state):
        for callback in list(self._watchers):
            callback(state)

    def get_message(self):
        """Messages received since the last call, oldest first (seed 002's
        GetMessage): chat messages, file offers and notices."""
        messages = list(self._inbox)
        self._inbox.clear()
        return messages

    def _pushed(self, connection, message):
        if message.get("id") is not None:
            self._acknowledge(connection, message["id"])
        self._deliver(message)

    def _deliver(self, message):
        message_type = message.get("message_type")
        message_id = message.get("id")
        if message_id is not None:
            if message_id in self._seen:
                return  # replayed after a lost acknowledgement
            self._seen[message_id] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            if message.get("chat_type") == "normal" and message.get("rece_user") in ("", "all"):
                self._lobby_seen = max(self._lobby_seen or 0, message_id)
        if message_type == "update_online_user":
            self.online = set(message.get("online_user", ()))
        elif message_type == "leave_message":
            self.online.discard(message.get("username"))
        elif message_type == "kicked":
            self.reactor.callLater(0, self.stop, "kicked: " + message.get("reason", ""))
        if message_type not in PRESENCE:
            self._inbox.append(message)
        for callback in list(self._subscribers):
            try:
                callback(message)
            except Exception:
                log.failure("a subscriber failed on {message}", message=message)

    def _acknowledge(self, connection, message_id):
        if connection not in self._acks:
            self._acks[connection] = []
            self.reactor.callLater(0, self._flush_acks, connection)
        self._acks[connection].append(message_id)

    def _flush_acks(self, connection):
        ids = self._acks.pop(connection, None)
        if ids and not connection.lost:
            connection.send({"message_type": "ack", "id": ids})

    # -- sending messages ----------------------------------------------------

    def send_message(self, to, content, group=False):
        """A private message to the account ``to``, a group message
        (``group=True``), or a lobby message (``to`` None).  Fires with the
        receipt (``id``, ``time``, ``client_id``) once the server stored it."""
        if self._stopped is not None:
            return defer.fail(ClientStopped(self._stopped))
        if len(self._outbox) >= OUTBOX_LIMIT:
            return defer.fail(LimitReached(f"{OUTBOX_LIMIT} messages already wait for a receipt"))
        private = to is not None and not group
        entry = _Outgoing({
            "message_type": "word", "chat_type": "private" if private else "normal",
            "send_user": self.account, "rece_user": to or "", "content": content,
            "client_id": uuid.uuid4().hex,
        })
        self._outbox[entry.message["client_id"]] = entry
        if self._connection is not None:
            self._send_outgoing(self._connection, entry)
        return entry.done

    def _send_outgoing(self, connection, entry):
        if entry.sent_on is connection:
            return
        entry.sent_on = connection

        def settled(result):
            if isinstance(result, defer.Failure) and result.check(ConnectionLost):
                return None  # stays in the outbox for the next connection
            if self._outbox.pop(entry.message["client_id"], None) is None:
                return None  # the client was stopped meanwhile
            if isinstance(result, defer.Failure):
                entry.done.errback(result)
            else:
                entry.done.callback({key: result[key] for key in ("id", "time", "client_id")})

        connection.request(entry.message).addBoth(settled)

    @property
    def outbox_size(self):
        return len(self._outbox)

    # -- operations ----------------------------------------------------------

    @defer.inlineCallbacks
    def operation(self, message_type, **fields):
        """Any shared operation of docs/protocol.md; fires with the reply's
        fields (``RequestFailed`` carries the reason of a failure)."""
        connection = yield self._connected()
        reply = yield connection.request({"message_type": message_type, **fields})
        return {key: value for key, value in reply.items() if key not in ("message_type", "content")}

    def get_user_info(self, account):
        return self.operation("get_user_info", account=account)

    def get_current_user(self):
        return self.operation("get_current_user")

    def set_user_info(self, **changes):
        return self.operation("set_user_info", **changes)

    def get_old_message(self, conversation=None, number=20, group=False, before_id=None):
        """History, newest first: with the account ``conversation``, of the group
        ``conversation`` (``group=True``), or of the lobby (None)."""
        fields = {"count": number}
        if conversation is not None:
            fields["group_id" if group else "with_user"] = conversation
        if before_id is not None:
            fields["before_id"] = before_id
        return self.operation("get_old_message", **fields).addCallback(lambda reply: reply["messages"])

    def friend(self, action, account):
        """``action``: request, accept, reject or remove."""
        return self.operation(f"friend_{action}", friend=account)

    def friend_list(self):
        return self.operation("friend_list")

    def group(self, action, group_id, member=None, **fields):
        """``action``: create, info, join, leave, dissolve (no member), invite,
        remove, promote, demote, transfer (a member)."""
        if member is not None:
            fields["member"] = member
        return self.operation(f"group_{action}", group_id=group_id, **fields)

    def group_list(self):
        return self.operation("group_list").addCallback(lambda reply: reply["groups"])
