"""Observability: the Prometheus endpoint scraped while clients work, and
JSON log lines with the events an administrator wants, without passwords."""

import dataclasses
import json
import signal
import urllib.request

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, threads

from neochat.services.root import build_service
from tests.clients import HeaderClient, JsonClient
from tests.twistd_process import Server


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        assert page.headers["Content-Type"].startswith("text/plain")
        text = page.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def metrics_settings(settings):
    return dataclasses.replace(settings, metrics="tcp:0:interface=127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_the_metrics_endpoint_counts_what_clients_do(metrics_settings):
    root = build_service(metrics_settings, reactor)
    root.startService()
    await root.ready
    metrics = next(child for child in root if child.name == "metrics")
    port = metrics.port.getHost().port
    clients = []
    try:
        before = await threads.deferToThread(scrape, port)
        alice = await JsonClient.connect(root.chat_service.ports[0].getHost().port)
        bob = await HeaderClient.connect(root.chat_service.ports[0].getHost().port)
        clients += [alice, bob]
        await alice.register_and_login("alice", acks=True)
        await bob.register_and_login("bob")
        reply = await alice.request({"message_type": "word", "chat_type": "private", "send_user": "alice",
                                     "rece_user": "bob", "content": "hi"})
        assert reply["content"] == "success"
        intruder = await JsonClient.connect(root.chat_service.ports[0].getHost().port)
        clients.append(intruder)
        reply = await intruder.request({"message_type": "login", "username": "alice", "password": "wrong"})
        assert reply["content"] == "fail"
        await metrics._refresh_pending()
        after = await threads.deferToThread(scrape, port)
    finally:
        for client in clients:
            client.close()
        await root.stopService()

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0)

    assert after[("neochat_connections", (("dialect", "json"),))] == 2
    assert after[("neochat_connections", (("dialect", "header"),))] == 1
    assert after[("neochat_online_accounts", ())] == 2
    assert grew("neochat_logins_total", result="ok") == 2
    assert grew("neochat_logins_total", result="failed") == 1
    assert grew("neochat_registrations_total") == 2
    assert grew("neochat_messages_total", kind="private") == 1
    assert ("neochat_relay_dropped_total", (("reason", "oversize"),)) in after
    assert ("neochat_pending_messages", ()) in after


def test_json_logs_record_logins_and_failures_without_passwords(tmp_path):
    server = Server(tmp_path, "--log-format", "json")
    try:
        client = server.client()
        client.login("alice", password="hunter2")
        intruder = server.client()
        intruder.send({"message_type": "login", "username": "alice", "password": "guess-me"})
        intruder.receive("login")
    finally:
        output = server.stop()
    events = [json.loads(line) for line in output.splitlines() if line.strip()]
    by_audit = {event["audit"]: event for event in events if "audit" in event}
    assert by_audit["registration"]["account"] == "alice"
    assert (by_audit["login"]["account"], by_audit["login"]["address"]) == ("alice", "127.0.0.1")
    failed = by_audit["login_failed"]
    assert (failed["account"], failed["address"], failed["reason"]) == ("alice", "127.0.0.1",
                                                                          "wrong account or password")
    assert by_audit["logout"]["account"] == "alice"
    assert "hunter2" not in output and "guess-me" not in output
    assert server.process.returncode in (0, -signal.SIGTERM)
