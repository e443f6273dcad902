"""Observability: the Prometheus endpoint scraped while clients work, and
log events (JSON lines, or a log observer) with the events an administrator
wants, without passwords or message bodies."""

import dataclasses
import json
import signal
import urllib.request

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task, threads
from twisted.logger import globalLogPublisher

from neochat.chat import audit
from neochat.services.limits import Limits
from neochat.services.root import build_service
from tests.clients import HeaderClient, JsonClient
from tests.test_logins import serve
from tests.test_pipeline import NonReader, numbered, send_all
from tests.test_transfers import PAYLOAD, in_band_transfer
from tests.twistd_process import Server
from tests.udp import wait_for
from tests.web_clients import WsClient, download, upload


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        assert page.headers["Content-Type"].startswith("text/plain")
        text = page.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def grown(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after[key] - before.get(key, 0)


@pytest.fixture
def metrics_settings(settings):
    return dataclasses.replace(settings, metrics="tcp:0:interface=127.0.0.1")


def scraped(server):
    """Deferred[{(sample name, labels): value}] from a running server's metrics endpoint."""
    metrics = next(child for child in server.root if child.name == "metrics")
    return threads.deferToThread(scrape, metrics.port.getHost().port)


@pytest_twisted.async_yield_fixture
async def metered(metrics_settings):
    """``await metered(setting=value, ...)``: a server with metrics and those settings."""
    running = []

    async def start(**changes):
        running.append(await serve(dataclasses.replace(metrics_settings, **changes)))
        return running[-1]

    yield start
    for server in running:
        await server.stop()


class AuditLog(list):
    """Audit events logged meanwhile; limit lines are gated on ``now``, which the test moves."""

    def __init__(self):
        super().__init__()
        self.now = 0.0

    def observe(self, event):
        if "audit" in event:
            self.append(event)

    def of(self, kind, **fields):
        return [event for event in self
                if event["audit"] == kind and all(event.get(name) == value for name, value in fields.items())]


@pytest.fixture
def audit_log(monkeypatch):
    events = AuditLog()
    monkeypatch.setattr(audit, "limit_lines",
                        audit.LogGate(audit.LIMIT_LOG_INTERVAL, audit.LIMIT_LOG_LINES, clock=lambda: events.now))
    globalLogPublisher.addObserver(events.observe)
    yield events
    globalLogPublisher.removeObserver(events.observe)


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
        intruder.send({"message_type": "ping", "padding": "secret-padding " * 600})  # over frame_before_login
        assert intruder.receive("error")["reason"] == "message too long (limit 8192 bytes)"
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
    limit = by_audit["limit"]
    assert (limit["limit"], limit["address"], limit["account"]) == ("frame_before_login", "127.0.0.1", None)
    assert "hunter2" not in output and "guess-me" not in output and "secret-padding" not in output
    assert server.process.returncode in (0, -signal.SIGTERM)


def word(sender, to, content):
    return {"message_type": "word", "chat_type": "private", "send_user": sender, "rece_user": to,
            "content": content}


@pytest_twisted.ensureDeferred
async def test_live_deliveries_commits_and_queries_are_timed(metered):
    server = await metered()
    before = await scraped(server)
    alice, = await server.logged_in("alice", acks=True)
    bob, = await server.logged_in("bob")  # what is written to it counts as delivered
    # What comes during the login's replay goes through the store: not live.
    await wait_for(lambda: not server.root.router.session_of("bob").replaying)
    assert (await alice.request(word("alice", "bob", "hi")))["content"] == "success"
    assert (await bob.next("word"))["content"] == "hi"
    live = await scraped(server)
    assert grown(before, live, "neochat_message_delivery_seconds_count") == 1
    assert grown(before, live, "neochat_message_delivery_seconds_sum") > 0
    assert grown(before, live, "neochat_message_commit_seconds_count") == 1
    assert grown(before, live, "neochat_database_seconds_count", kind="write") >= 3  # two accounts, one message
    assert grown(before, live, "neochat_database_seconds_count", kind="read") >= 2  # the logins' replays
    assert grown(before, live, "neochat_database_seconds_bucket", kind="write", le="+Inf") >= 3
    # A message for an offline account is committed now and replayed at its
    # next login: not a live delivery.
    await bob.close()
    await server.offline("bob")
    assert (await alice.request(word("alice", "bob", "later")))["content"] == "success"
    bob = await server.client()
    await bob.request({"message_type": "login", "username": "bob", "password": "secret"})
    assert (await bob.next("word"))["content"] == "later"
    replayed = await scraped(server)
    assert grown(live, replayed, "neochat_message_delivery_seconds_count") == 0
    assert grown(live, replayed, "neochat_message_commit_seconds_count") == 1


@pytest_twisted.ensureDeferred
async def test_in_band_and_http_transfers_count_with_ftp(metered):
    server = await metered()
    before = await scraped(server)
    await threads.deferToThread(in_band_transfer, server.port, True)
    in_band = await scraped(server)
    for direction in ("upload", "download"):
        assert grown(before, in_band, "neochat_file_transfers_total", direction=direction) == 1
        assert grown(before, in_band, "neochat_file_transfer_bytes_total", direction=direction) == len(PAYLOAD)
    carol = await WsClient.connect(server.http_port)
    await carol.register_and_login("carol")
    token = (await carol.request({"message_type": "web_token"}))["token"]
    status, _, body = await threads.deferToThread(upload, server.http_port, token, "notes.txt", b"12345")
    assert status == 201
    status, _, got = await threads.deferToThread(download, server.http_port, token, json.loads(body)["name"])
    assert (status, got) == (200, b"12345")
    await carol.close()
    over_http = await scraped(server)
    for direction in ("upload", "download"):
        assert grown(in_band, over_http, "neochat_file_transfers_total", direction=direction) == 1
        assert grown(in_band, over_http, "neochat_file_transfer_bytes_total", direction=direction) == 5


@pytest_twisted.ensureDeferred
async def test_tripped_limits_are_counted_by_name_and_logged_once_per_minute(metered, audit_log):
    per_address = 4
    server = await metered(limits=dataclasses.replace(Limits(), connections_per_address=per_address))
    before = await scraped(server)
    alice, = await server.logged_in("alice")
    too_long = word("alice", "bob", "x" * Limits().json_object)
    for _ in range(3):
        alice.send(too_long)
        assert (await alice.next("error"))["reason"] == "message too long (limit 65536 bytes)"
    stranger = await server.client()
    stranger.send({"message_type": "register", "username": "eve", "password": "p" * 9000})
    assert (await stranger.next("error"))["reason"] == "message too long (limit 8192 bytes)"
    for _ in range(per_address - 2):
        await server.client()
    refused = await server.client()
    refused.send({"message_type": "ping"})
    assert (await refused.next("error"))["reason"] == "too many connections from your address"
    alice.send({"message_type": "ping"})
    assert await alice.next("pong")  # the others are still served
    audit_log.now += audit.LIMIT_LOG_INTERVAL
    alice.send(too_long)
    assert (await alice.next("error"))["reason"] == "message too long (limit 65536 bytes)"
    after = await scraped(server)
    assert grown(before, after, "neochat_limits_tripped_total", limit="json_object") == 4
    assert grown(before, after, "neochat_limits_tripped_total", limit="frame_before_login") == 1
    assert grown(before, after, "neochat_limits_tripped_total", limit="connections_per_address") == 1
    lines = audit_log.of("limit", limit="json_object")
    assert [(line["address"], line["account"]) for line in lines] == [("127.0.0.1", "alice")] * 2
    # the next line after the two trips held back says so
    assert audit_log.of("limit", limit="frame_before_login", address="127.0.0.1", account=None, suppressed=2)
    assert audit_log.of("limit", limit="connections_per_address", address="127.0.0.1")
    assert not any("xxxx" in json.dumps(event, default=repr) or "pppp" in json.dumps(event, default=repr)
                   for event in audit_log)


def test_the_log_gate_holds_back_repeats_and_floods():
    now = [0.0]
    gate = audit.LogGate(60, 2, clock=lambda: now[0])
    assert [gate.admit(key) for key in ("a", "a", "b", "c")] == [0, None, 1, None]
    now[0] = 59.9
    assert gate.admit("c") is None
    now[0] = 60
    assert [gate.admit(key) for key in ("c", "a", "b")] == [2, 0, None]


@pytest_twisted.ensureDeferred
async def test_a_slow_client_dropped_is_logged_and_counted(metered, audit_log):
    server = await metered(limits=dataclasses.replace(Limits(), messages_per_second=0, bytes_per_second=0),
                           behind_deadline=0.5)
    before = await scraped(server)
    sender, = await server.logged_in("sender", acks=True)
    reader = NonReader(server.port, "sleepy", acks=True)
    await threads.deferToThread(reader.log_in)
    await send_all(sender, "sender", "sleepy", numbered(200, 30000))
    await task.deferLater(reactor, 1.0, lambda: None)
    assert await threads.deferToThread(reader.dropped)
    after = await scraped(server)
    assert grown(before, after, "neochat_limits_tripped_total", limit="behind_deadline") == 1
    dropped, = audit_log.of("slow_client_dropped")
    assert (dropped["account"], dropped["address"], dropped["limit"]) == ("sleepy", "127.0.0.1", "behind_deadline")
