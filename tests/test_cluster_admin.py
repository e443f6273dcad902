"""neochatctl's live verbs on a 3-node cluster: any node's admin socket
answers for every node (neochat/cluster/asking.py between the nodes), and
bans and registration set on one node apply on all."""

import json
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from neochat.admin.cli import OK, REFUSED
from neochat.chat.errors import ChatError
from neochat.cluster.asking import Asking, NoAnswer
from tests.clients import JsonClient
from tests.test_admin import Ctl, login
from tests.test_cluster import (REDIS, REDIS_DB, cluster, kill_redis_connections, three_nodes,  # noqa: F401
                                wait_until)  # (cluster is a fixture)
from tests.web_clients import WsClient


def ctl_on(cluster, node, tmp_path):
    """neochatctl configured as the given node (its config file names it)."""
    config = tmp_path / f"{node}.toml"
    config.write_text(f'cluster = "redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}"\nnode-id = "{node}"\n')
    ctl = Ctl(SimpleNamespace(data_dir=cluster.data_dir, db_url=cluster.db_url), tmp_path)
    ctl.base = ["--config", str(config), *ctl.base]
    return ctl


@defer.inlineCallbacks
def one_on_each_node(cluster):
    clients = []
    for node, name in zip(cluster.nodes, ("alice", "bob", "carol")):
        clients += (yield node.logged_in(name))
    n0 = cluster.nodes[0].root.router
    assert (yield wait_until(lambda: n0.online_accounts() == ["alice", "bob", "carol"]))
    return clients


@pytest_twisted.inlineCallbacks
def test_online_kick_and_stats_cover_every_node(cluster, tmp_path):
    alice, bob, carol = yield one_on_each_node(cluster)
    ctl = ctl_on(cluster, "n1", tmp_path)
    status, online = yield defer.ensureDeferred(ctl("online"))
    assert status == OK
    assert [(row["account"], row["node"], row["address"]) for row in online] == [
        ("alice", "n0", "127.0.0.1"), ("bob", "n1", "127.0.0.1"), ("carol", "n2", "127.0.0.1")]

    status, stats = yield defer.ensureDeferred(ctl("stats"))
    assert status == OK and (stats["online"], stats["connections"], stats["accounts"]) == (3, 3, 3)
    assert [(row["node"], row["online"]) for row in stats["nodes"]] == [("n0", 1), ("n1", 1), ("n2", 1)]

    result = yield defer.ensureDeferred(ctl("kick", "carol", "--reason", "maintenance"))
    assert result == (OK, {"account": "carol", "node": "n2"})
    assert (yield carol.next("kicked")) == {"message_type": "kicked", "reason": "maintenance"}
    n1 = cluster.nodes[1].root.router
    assert (yield wait_until(lambda: not n1.is_online("carol")))
    status, online = yield defer.ensureDeferred(ctl("online"))
    assert [row["account"] for row in online] == ["alice", "bob"]
    status, error = yield defer.ensureDeferred(ctl("kick", "carol"))
    assert (status, error.strip()) == (REFUSED, "neochatctl kick: not online")


@pytest_twisted.inlineCallbacks
def test_a_node_that_does_not_answer_is_named_and_the_others_still_count(cluster, tmp_path):
    yield one_on_each_node(cluster)
    n0, _, n2 = (node.root.router for node in cluster.nodes)
    n0.asking.timeout = 0.5
    for verb in ("admin_online", "admin_stats"):
        n2.asking.answer(verb, lambda node: defer.Deferred())  # n2 hangs
    ctl = ctl_on(cluster, "n0", tmp_path)
    status, error = yield defer.ensureDeferred(ctl("online"))
    assert (status, error.strip()) == (REFUSED, "neochatctl online: node n2 did not answer")
    status, stats = yield defer.ensureDeferred(ctl("stats"))
    assert status == OK and stats["online"] == 2
    assert stats["nodes"][2] == {"node": "n2", "error": "node n2 did not answer"}
    result = yield defer.ensureDeferred(ctl("kick", "bob"))
    assert result == (OK, {"account": "bob", "node": "n1"})


def log_in(node, account):
    """The login reply of ``account`` (password "secret") on ``node``."""
    return defer.ensureDeferred(login(node, account, "secret")).addCallback(lambda client_and_reply: client_and_reply[1])


LOGGED_IN = {"message_type": "login", "content": "success"}
ACCOUNT_BANNED = {"message_type": "login", "content": "fail", "reason": "account banned"}
ADDRESS_BANNED = {"message_type": "error", "content": "fail", "reason": "address banned"}


@pytest_twisted.inlineCallbacks
def test_an_account_banned_on_one_node_is_kicked_on_its_node_and_refused_on_all(cluster, tmp_path):
    _, bob, _ = yield one_on_each_node(cluster)
    status, result = yield defer.ensureDeferred(ctl_on(cluster, "n0", tmp_path)("ban", "bob", "--reason", "spam"))
    assert status == OK and result["disconnected"] == 1
    assert result["nodes"] == [{"node": "n0", "disconnected": 0}, {"node": "n1", "disconnected": 1},
                               {"node": "n2", "disconnected": 0}]
    assert (yield bob.next("kicked")) == {"message_type": "kicked", "reason": "account banned"}
    for node in cluster.nodes:
        assert (yield log_in(node, "bob")) == ACCOUNT_BANNED
    status, result = yield defer.ensureDeferred(ctl_on(cluster, "n2", tmp_path)("unban", "bob"))
    assert status == OK and [row["node"] for row in result["nodes"]] == ["n0", "n1", "n2"]
    for node in cluster.nodes:
        assert (yield log_in(node, "bob")) == LOGGED_IN


@pytest_twisted.async_yield_fixture
async def web_cluster(cluster_db, tmp_path):
    """Three nodes that serve the web client's WebSocket too."""
    async for running in three_nodes(cluster_db, tmp_path, http=["tcp:0:interface=127.0.0.1"]):
        yield running


@pytest_twisted.inlineCallbacks
def test_an_address_banned_on_one_node_loses_its_connections_on_every_node(web_cluster, tmp_path):
    cluster = web_cluster
    n0, n1, n2 = cluster.nodes
    alice, = yield n0.logged_in("alice")
    bob, = yield n1.logged_in("bob")
    carol = yield WsClient.connect(n2.http_port)
    yield carol.register_and_login("carol")
    erin = yield connectProtocol(  # another address of the loopback network
        TCP4ClientEndpoint(reactor, "127.0.0.1", n1.port, bindAddress=("127.0.0.2", 0)), JsonClient())
    n1.clients.append(erin)
    yield erin.register_and_login("erin")
    status, result = yield defer.ensureDeferred(ctl_on(cluster, "n0", tmp_path)("ban", "--address", "127.0.0.1"))
    assert status == OK and result["disconnected"] == 3
    for client in (alice, bob):
        yield client.closed
        assert (yield client.next("error")) == ADDRESS_BANNED
    yield carol.closed
    assert ((yield carol.next("error")), carol.close_code) == (ADDRESS_BANNED, 4403)
    refused = yield JsonClient.connect(n2.port)
    yield refused.closed  # closed at once, before a word
    erin.send({"message_type": "ping"})
    assert (yield erin.next("pong")) == {"message_type": "pong"}
    assert (yield defer.ensureDeferred(ctl_on(cluster, "n1", tmp_path)("unban", "--address", "127.0.0.1")))[0] == OK
    again = yield WsClient.connect(n2.http_port)
    reply = yield again.request({"message_type": "login", "username": "carol", "password": "secret"})
    assert reply == LOGGED_IN
    yield again.close()


@pytest_twisted.inlineCallbacks
def test_registration_closed_on_one_node_is_closed_on_all(cluster, tmp_path):
    clients = yield defer.gatherResults([node.client() for node in cluster.nodes])

    def register(client, account):
        return client.request({"message_type": "register", "username": account, "password": "secret"})

    result = yield defer.ensureDeferred(ctl_on(cluster, "n1", tmp_path)("registration", "closed"))
    assert result[0] == OK and result[1]["registration"] == "closed"
    for n, client in enumerate(clients):
        assert (yield register(client, f"user{n}")) == {
            "message_type": "register", "content": "fail", "reason": "registration closed"}
    assert (yield defer.ensureDeferred(ctl_on(cluster, "n2", tmp_path)("registration", "open")))[0] == OK
    for n, client in enumerate(clients):
        assert (yield register(client, f"user{n}")) == {"message_type": "register", "content": "success"}


@pytest_twisted.inlineCallbacks
def test_a_node_that_missed_a_ban_applies_it_once_its_subscription_is_back(cluster, tmp_path):
    _, _, carol = yield one_on_each_node(cluster)
    n0, _, n2 = cluster.nodes
    n0.root.router.asking.timeout = 0.5
    n2.root.router.asking.answer("admin_admission", lambda node: defer.Deferred())  # the request is lost
    status, result = yield defer.ensureDeferred(ctl_on(cluster, "n0", tmp_path)("ban", "carol"))
    assert status == OK and result["nodes"][2] == {"node": "n2", "error": "node n2 did not answer"}
    assert n2.root.router.session_of("carol") is not None  # n2 does not know yet
    yield kill_redis_connections(n2)  # back with a new subscription
    assert (yield carol.next("kicked")) == {"message_type": "kicked", "reason": "account banned"}
    assert (yield log_in(n2, "carol")) == ACCOUNT_BANNED


@pytest_twisted.inlineCallbacks
def test_a_ban_the_other_nodes_cannot_be_told_of_is_refused_naming_what_was_done(cluster, tmp_path, monkeypatch):
    alice, _, _ = yield one_on_each_node(cluster)
    router = cluster.nodes[0].root.router
    router.asking.timeout = 0.5
    monkeypatch.setattr(router.redis.commands, "execute_command", lambda *args: defer.Deferred())  # Redis away
    status, error = yield defer.ensureDeferred(ctl_on(cluster, "n0", tmp_path)("ban", "alice"))
    monkeypatch.undo()
    assert (status, error.strip()) == (
        REFUSED, "neochatctl ban: stored, and applied on n0 only: Redis did not answer")
    assert (yield alice.next("kicked")) == {"message_type": "kicked", "reason": "account banned"}


def test_requests_waiting_for_other_nodes_are_bounded():
    clock = task.Clock()
    sent = []
    asking = Asking("n0", lambda channel, text: sent.append((channel, json.loads(text))), clock,
                    timeout=2, max_pending=2)
    first, second = asking.ask("n1", "admin_stats"), asking.ask("n2", "admin_stats")
    refused = asking.ask("n1", "admin_stats")
    assert isinstance(refused.result.value, ChatError) and refused.result.value.stat == 503
    refused.addErrback(lambda _: None)
    asking.received(json.dumps({"id": sent[0][1]["id"], "result": {"online": 4}}))
    assert first.result == {"online": 4}
    third = asking.ask("n1", "admin_stats")  # room again
    clock.advance(2)
    for unanswered in (second, third):
        with pytest.raises(NoAnswer):
            unanswered.result.raiseException()
        unanswered.addErrback(lambda _: None)
    assert [channel for channel, _ in sent] == ["ask:n1", "ask:n2", "ask:n1"]
