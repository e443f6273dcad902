"""A router for several nodes sharing one Redis: the interface of
neochat/chat/routing.py, cluster-wide.

Redis holds, per node, a hash of the accounts online on it
(``accounts:NODE``) and a liveness key (``alive:NODE``) that the node's
heartbeat refreshes and that expires after three missed heartbeats; the set
``nodes`` lists them.  Channels (all names under the key prefix):

- ``presence``: ``{"join"|"leave": account, "node": id}``, told by the
  account's node.  A join from another node kicks the account's session
  here (one login per account, cluster-wide);
- ``node:ID``: ``{"to": [accounts], "event": ...}``, events for accounts
  on that node: one message per node and event, however many recipients;
- ``all``: lobby messages, once for the whole cluster; every node pushes
  them to its own sessions;
- ``ask:ID``: requests to node ID and answers from it (cluster/asking.py):
  calls across nodes, the admin tool's live verbs, bans and registration.

A voice clip crosses nodes in its event, so one larger than ``max_clip``
bytes is refused to its sender (413) rather than sent through Redis; the
recipient's node puts it in its own voice spool, where it waits on disk
like a local clip while the recipient is behind.

Every heartbeat also takes a snapshot of who is on which node, so that a
dead node's accounts go offline and a missed announcement is repaired; when
a node is found dead, the others replay their sessions' pending queues, for
what it committed and died before announcing.

Pub/sub delivers at most once: the database stays the source of truth.  A
stored message is announced after its commit, with its id; when the
subscription comes back after a Redis outage, every local session replays
its pending queue past the last id it was written (chat/domain.py), so
nothing stored is lost; the late announcement of a message a replay wrote
already is dropped by its id.
"""

import json

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from neochat.chat.errors import ChatError
from neochat.chat.model import ChatMessage, Notice
from neochat.cluster import events
from neochat.cluster.asking import Asking
from neochat.cluster.redis import Redis

log = Logger()

HEARTBEAT = 5.0  # seconds; a node is dead after three without one
MAX_WAITING = 10_000  # Redis commands not answered yet (Redis away: they wait)
REPLAYED = 1000  # message ids remembered per session, as written by replays
STOP_TIMEOUT = 2.0  # seconds a stopping node waits to forget its keys
KICK_REASON = "logged in from another connection"
ASK_TIMEOUT = 5.0  # seconds another node has to answer a request
MAX_CLIP = 1024 * 1024  # bytes of a voice clip to an account on another node

# The live nodes, and [node, account, node, account...] of theirs; forgets the dead.
SNAPSHOT = """
local live, pairs = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. node) == 1 then
    live[#live + 1] = node
    for _, account in ipairs(redis.call('HKEYS', ARGV[1] .. 'accounts:' .. node)) do
      pairs[#pairs + 1] = node
      pairs[#pairs + 1] = account
    end
  else
    redis.call('SREM', KEYS[1], node)
  end
end
return {live, pairs}
"""


# The live nodes, now.
LIVE_NODES = """
local live = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. node) == 1 then
    live[#live + 1] = node
  end
end
return live
"""


class ClusterRouter(service.Service):
    def __init__(self, url, node_id, reactor, prefix="neochat:", heartbeat=HEARTBEAT,
                 ask_timeout=ASK_TIMEOUT, max_clip=MAX_CLIP):
        self.url = url
        self.node_id = node_id
        self.reactor = reactor
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.chat = None  # bound once the Chat is built: presence and replay
        self.redis = None
        self._local = {}  # account -> session on this node
        self._echoed = set()  # local accounts whose join came back on the channel
        self._replayed = {}  # local account -> {message id: None} its replays wrote
        self._remote = {}  # account -> node id, for accounts on other nodes
        self._outbox = {}  # node -> [(event, [accounts])], published at the end of the turn
        self._flush_call = None
        self._waiting = 0  # commands sent and not answered
        self._live_nodes = set()  # as of the last snapshot
        self._snapshots = []  # per snapshot in flight: the announcements meanwhile
        self._abandoned = False
        self.listening = False  # subscribed (tests wait for it)
        self._on_subscribed = []  # callables run each time the subscription is (back) up
        self.max_clip = max_clip
        self.asking = Asking(node_id, self._publish, reactor, ask_timeout)
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._channels = {
            f"{prefix}node:{node_id}": self._received_for_node,
            f"{prefix}all": self._received_for_all,
            f"{prefix}presence": self._received_presence,
            prefix + self.asking.channel(node_id): self.asking.received,
        }

    def bind(self, chat):
        self.chat = chat
        written = chat.written

        def note_written(session, message):
            if session.replaying:
                self._note_replayed(session.account, message.id)
            return written(session, message)

        chat.written = note_written  # every queued message written to a session passes here

    def _note_replayed(self, account, message_id):
        """Ids a replay wrote: their announcement may come after (it goes
        through Redis), and must not write them again.  The last REPLAYED."""
        replayed = self._replayed.setdefault(account, {})
        replayed[message_id] = None
        if len(replayed) > REPLAYED:
            del replayed[next(iter(replayed))]

    # -- the routing interface ---------------------------------------------

    def attach(self, account, session):
        previous = self._local.get(account)
        self._local[account] = session
        self._echoed.discard(account)  # until its join comes back on the channel
        self._replayed.pop(account, None)
        self._remote.pop(account, None)  # its node kicks it when it hears the join
        if previous is not None and previous is not session:
            previous.kick(KICK_REASON)
        accounts = self._key("accounts", self.node_id)
        self._command("HSET", accounts, account, "1")
        self._command("PEXPIRE", accounts, self._ttl())  # lives no longer than the node
        self._announce(join=account)

    def detach(self, account, session):
        if self._local.get(account) is not session:
            return False
        del self._local[account]
        self._echoed.discard(account)
        self._replayed.pop(account, None)
        if not self._abandoned:
            self._command("HDEL", self._key("accounts", self.node_id), account)
            self._announce(leave=account)
        return True

    def is_online(self, account):
        return account in self._local or account in self._remote

    def session_of(self, account):
        """Only sessions on this node: a peer elsewhere has no address here."""
        return self._local.get(account)

    def online_accounts(self):
        return sorted(self._local.keys() | self._remote.keys())

    def deliver(self, account, event):
        session = self._local.get(account)
        if session is not None:
            session.push(event)
            return True
        node = self._remote.get(account)
        if node is None:
            return False
        if isinstance(event, Notice) and event.size > self.max_clip:
            raise ChatError("voice clip too large to reach another node", 413)
        entries = self._outbox.setdefault(node, [])
        if entries and entries[-1][0] is event:
            entries[-1][1].append(account)  # a group's members on one node: one message
        else:
            entries.append((event, [account]))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)
        return True

    # -- beyond the routing interface: the cluster's nodes -------------------

    def node_of(self, account):
        """The node the account is online on, or None."""
        return self.node_id if account in self._local else self._remote.get(account)

    def live_nodes(self):
        """Every node alive as of the last heartbeat, this one included."""
        return sorted(self._live_nodes | {self.node_id})

    def ask(self, node, op, **args):
        """Deferred of ``op``'s result on ``node`` (cluster/asking.py)."""
        return self.asking.ask(node, op, **args)

    def tell(self, node, op, **args):
        self.asking.tell(node, op, **args)

    def answer(self, op, handler):
        self.asking.answer(op, handler)

    def when_subscribed(self, callback):
        """``callback()`` each time the subscription is (back) up: what was
        announced while this node did not listen may need reading again."""
        self._on_subscribed.append(callback)

    @defer.inlineCallbacks
    def ask_everywhere(self, op, here=True, **args):
        """[(node, success, result or Failure)] from every node alive now
        (without ``here``: but this one)."""
        asked = self.redis.commands.execute_command("EVAL", LIVE_NODES, "1", self._key("nodes"), self.prefix)
        try:
            live = yield asked.addTimeout(self.asking.timeout, self.reactor)
        except defer.TimeoutError:
            raise ChatError("Redis did not answer", 503) from None
        nodes = set(live) - {self.node_id}
        nodes = sorted(nodes | {self.node_id} if here else nodes)
        results = yield defer.DeferredList([self.ask(node, op, **args) for node in nodes], consumeErrors=True)
        return [(node, ok, value) for node, (ok, value) in zip(nodes, results)]

    def broadcast(self, event, exclude=None):
        for account, session in list(self._local.items()):
            if account != exclude:
                session.push(event)
        self._publish("all", events.envelope(events.encode(event), node=self.node_id, exclude=exclude))

    # -- out -----------------------------------------------------------------

    def _key(self, *parts):
        return self.prefix + ":".join(parts)

    def _command(self, *args):
        """Commands wait while Redis is away, up to MAX_WAITING; past that
        they are dropped (stored messages wait in the database anyway)."""
        if self._waiting >= MAX_WAITING:
            log.warn("Redis is behind: {command} dropped", command=args[0])
            return defer.succeed(None)
        self._waiting += 1

        def done(result):
            self._waiting -= 1
            return result

        d = self.redis.commands.execute_command(*args).addBoth(done)
        return d.addErrback(lambda failure: log.failure("Redis {command} failed", failure, command=args[0]))

    def _publish(self, channel, text):
        return self._command("PUBLISH", self._key(channel), text)

    def _announce(self, **change):
        self._publish("presence", json.dumps(dict(change, node=self.node_id)))

    def _flush(self):
        self._flush_call = None
        outbox, self._outbox = self._outbox, {}
        encoded = {}  # id(event) -> JSON, for this flush
        for node, entries in outbox.items():
            for event, accounts in entries:
                if id(event) not in encoded:
                    encoded[id(event)] = events.encode(event)
                self._publish(f"node:{node}", events.envelope(encoded[id(event)], to=accounts))

    # -- in ------------------------------------------------------------------

    def received(self, channel, text):
        try:
            self._channels[channel](text)
        except Exception:
            log.failure("bad message on {channel}", channel=channel)

    def _received_for_node(self, text):
        routing, event = events.open_envelope(text)
        for account in routing["to"]:
            session = self._local.get(account)
            if session is not None and isinstance(event, Notice) and event.size:  # a clip's bytes
                try:
                    self._push(session, self._spooled(event))
                except ChatError as refused:
                    log.info("voice clip from another node refused: {reason}", reason=refused)
            else:
                self._push(session, event)

    def _spooled(self, event):
        """A voice clip from another node, moved from its event to this
        node's voice spool (SpoolFull when there is no room)."""
        body = event.fields["body"]
        clip = self.chat.clips.reserve(event.fields.get("user_account"), len(body))
        clip.write(body)
        clip.close()
        return Notice(event.message_type, dict(event.fields, body=clip))

    def _received_for_all(self, text):
        routing, event = events.open_envelope(text)
        if routing["node"] == self.node_id:
            return
        for account, session in list(self._local.items()):
            if account != routing["exclude"]:
                self._push(session, event)

    def _push(self, session, event):
        """A session that moved or cannot take it misses a live event: a
        stored message waits in its pending queue anyway.  One its replay
        wrote already is not written twice."""
        if session is None:
            return
        if isinstance(event, ChatMessage) and event.id in self._replayed.get(session.account, ()):
            return
        try:
            session.push(event)
        except ChatError as refused:
            if getattr(event, "clip", None) is not None:
                event.clip.discard()
            log.info("event from another node refused: {reason}", reason=refused)

    def _received_presence(self, text):
        change = json.loads(text)
        if change["node"] == self.node_id:
            if change.get("join") in self._local:
                self._echoed.add(change["join"])
            return
        for announced in self._snapshots:
            announced.append(change)
        self._apply(change)

    def _apply(self, change):
        node = change["node"]
        if "join" in change:
            account = change["join"]
            if account in self._local and account not in self._echoed:
                # Both nodes logged it in at once: the channel's order says
                # ours is the newer login, so the other node kicks its own.
                return
            was_online = self.is_online(account)
            session = self._local.pop(account, None)
            self._echoed.discard(account)
            self._replayed.pop(account, None)
            self._remote[account] = node
            if session is not None:
                self._command("HDEL", self._key("accounts", self.node_id), account)
                session.kick(KICK_REASON)
            elif not was_online:
                self.chat.presence.came_online(account)
        elif self._remote.get(change["leave"]) == node:
            del self._remote[change["leave"]]
            self.chat.presence.went_offline(change["leave"])

    # -- liveness and resynchronisation ------------------------------------

    def startService(self):
        super().startService()
        self.redis = Redis(self.url, self, self.reactor)
        self._beat.start(self.heartbeat, now=True)

    def subscribed(self, connection):
        """The subscription is (back) up: subscribe, write this node's
        accounts again, take a snapshot, and replay every local session's
        pending queue for what was announced while nobody listened."""
        connection.subscribe(list(self._channels)).addCallbacks(
            self._listening, lambda failure: log.failure("Redis SUBSCRIBE failed", failure))
        connection.whenDisconnected().addCallback(lambda _: setattr(self, "listening", False))
        accounts = self._key("accounts", self.node_id)
        self._command("DEL", accounts)
        if self._local:
            self._command("HSET", accounts, *[part for account in self._local for part in (account, "1")])
            self._command("PEXPIRE", accounts, self._ttl())
        self._heartbeat()
        self._replay_all()

    def _listening(self, _):
        self.listening = True
        for callback in self._on_subscribed:
            callback()

    def _replay_all(self):
        """Every local session catches up from its pending queue."""
        for session in list(self._local.values()):
            session.missed = True
            if session.writable:
                self.chat.replay(session)

    @defer.inlineCallbacks
    def _heartbeat(self):
        ttl = self._ttl()
        self._command("SADD", self._key("nodes"), self.node_id)
        self._command("SET", self._key("alive", self.node_id), "1", "PX", ttl)
        self._command("PEXPIRE", self._key("accounts", self.node_id), ttl)
        announced = []
        self._snapshots.append(announced)
        try:
            live, flat = yield self.redis.commands.execute_command(
                "EVAL", SNAPSHOT, "1", self._key("nodes"), self.prefix)
        except Exception:
            log.failure("Redis snapshot failed")
            return
        finally:
            self._snapshots.remove(announced)
        self._resync({account: node for node, account in zip(flat[::2], flat[1::2]) if node != self.node_id})
        for change in announced:
            self._apply(change)
        dead, self._live_nodes = self._live_nodes - set(live), set(live)
        if dead:
            # It may have committed messages it never announced.
            log.info("nodes gone: {dead}; replaying the pending queues here", dead=sorted(dead))
            self._replay_all()

    def _ttl(self):
        """Milliseconds a node's keys outlive its last heartbeat."""
        return str(int(self.heartbeat * 3000))

    def _resync(self, remote):
        """``remote`` is the truth now: tell presence what changed."""
        before = self._remote
        self._remote = {account: node for account, node in remote.items() if account not in self._local}
        for account in sorted(before.keys() - self._remote.keys()):
            self.chat.presence.went_offline(account)
        for account in sorted(self._remote.keys() - before.keys()):
            self.chat.presence.came_online(account)

    @defer.inlineCallbacks
    def stopService(self):
        """After the chat service: its sessions have left already."""
        super().stopService()
        if self._beat.running:
            self._beat.stop()
        if not self._abandoned:
            forget = defer.gatherResults([
                self._command("DEL", self._key("alive", self.node_id), self._key("accounts", self.node_id)),
                self._command("SREM", self._key("nodes"), self.node_id),
            ])
            # Redis may be down: then the keys expire by themselves.
            yield forget.addTimeout(STOP_TIMEOUT, self.reactor).addErrback(lambda _: None)
        yield self.redis.close()

    def abandon(self):
        """Stop talking to Redis at once, as a killed node would (tests)."""
        self._abandoned = True
        if self._beat.running:
            self._beat.stop()
        return self.redis.close()
