"""neochatctl's live verbs on a 3-node cluster: any node's admin socket
answers for every node (neochat/cluster/asking.py between the nodes)."""

import json
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, task

from neochat.admin.cli import OK, REFUSED
from neochat.chat.errors import ChatError
from neochat.cluster.asking import Asking, NoAnswer
from tests.test_admin import Ctl
from tests.test_cluster import REDIS, REDIS_DB, cluster, wait_until  # noqa: F401 (cluster is a fixture)


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
