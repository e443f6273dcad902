"""Logins through real sockets: resume tokens, the throttle on failed logins
and registrations, closed registration, and the bounded hashing pool."""

import threading

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import reactor, task
from twisted.python import usage

from neochat.chat.hashing import HashPool, ServerBusy
from neochat.chat.throttle import FailurePolicy, Throttle, ThrottleSettings, TooManyAttempts
from neochat.services.root import build_service
from neochat.tap import Options
from tests.conftest import RunningServer, Tripped

PASSWORD = "secret"


async def serve(settings):
    root = build_service(settings, reactor)
    root.startService()
    await root.ready
    return RunningServer(root)


@pytest_twisted.async_yield_fixture
async def strict(settings):
    """A server whose throttle trips after a few failures."""
    settings.throttle = ThrottleSettings(
        account=FailurePolicy(free=2, lock_after=4, lock_seconds=60),
        address=FailurePolicy(free=6, lock_after=8, lock_seconds=60),
        registrations_per_address=3,
    )
    running = await serve(settings)
    yield running
    await running.stop()


async def login(client, dialect, account, password=None, **extra):
    """(ok, reply): a login in either dialect."""
    if dialect == "json":
        request = {"message_type": "login", "username": account, **extra}
        if password is not None:
            request["password"] = password
        reply = await client.request(request)
        return reply["content"] == "success", reply
    request = {"message_type": "login", "user_account": account, **extra}
    if password is not None:
        request["user_password"] = password
    reply = await client.request(request)
    return reply["stat"] == "200", reply


async def register(client, dialect, account, password=PASSWORD):
    if dialect == "json":
        reply = await client.request({"message_type": "register", "username": account, "password": password})
        return reply["content"] == "success", reply
    reply = await client.request({"message_type": "registered", "user_account": account, "user_password": password})
    return reply["stat"] == "200", reply


def resume_flag(dialect):
    return {"resume": True} if dialect == "json" else {"resume": "1"}


@pytest_twisted.ensureDeferred
async def test_resume_token_logs_in_again_without_the_password(server, dialect):
    first = await server.client(dialect)
    assert (await register(first, dialect, "ann"))[0]
    ok, reply = await login(first, dialect, "ann", PASSWORD, **resume_flag(dialect))
    assert ok and reply["token"].startswith("v1.")
    first.close()
    again = await server.client(dialect)
    ok, reply = await login(again, dialect, "ann", token=reply["token"])
    assert ok and reply["token"].startswith("v1."), reply
    assert list(server.chat.router.online_accounts()) == ["ann"]


@pytest_twisted.ensureDeferred
async def test_plain_login_reply_has_no_token(server):
    client = await server.client("json")
    await client.register_and_login("ann")  # asserts the seed's exact reply


@pytest_twisted.ensureDeferred
async def test_token_of_another_account_or_forged_or_after_a_password_change_is_refused(server, dialect):
    client = await server.client(dialect)
    for name in ("ann", "bob"):
        assert (await register(client, dialect, name))[0]
    ok, reply = await login(client, dialect, "ann", PASSWORD, **resume_flag(dialect))
    token = reply["token"]
    other = await server.client(dialect)
    assert not (await login(other, dialect, "bob", token=token))[0]
    assert not (await login(other, dialect, "ann", token=token[:-2] + "AA"))[0]
    users = server.root.store.users
    stored = await users.password_hash("ann")
    assert await users.replace_password_hash("ann", stored, stored + "x")
    ok, reply = await login(other, dialect, "ann", token=token)
    assert not ok and "wrong account or password" in str(reply)


@pytest_twisted.ensureDeferred
async def test_a_reconnect_storm_gives_each_account_its_own_pending_messages_once(server):
    """Logins that arrive together share their reads (neochat/store/reads.py):
    each account still gets its own messages, in order and once, and its
    friends hear that it came online."""
    names = [f"u{number}" for number in range(18)]  # with the watcher, within connections_per_address
    watcher, = await server.logged_in("watcher", acks=True)  # receipts: committed
    tokens = {}
    for name in names:
        client = await server.client()
        assert (await register(client, "json", name))[0]
        ok, reply = await login(client, "json", name, PASSWORD, resume=True)
        tokens[name] = reply["token"]
        if name in ("u0", "u1"):
            await watcher.op("friend_request", friend=name)
            await client.op("friend_accept", friend="watcher")
        await client.close()
        await server.offline(name)
    expected = {name: [f"{name}:{k}" for k in range(number % 3)] for number, name in enumerate(names)}
    for name, contents in expected.items():
        for content in contents:
            reply = await watcher.request({"message_type": "word", "chat_type": "private", "send_user": "watcher",
                                           "rece_user": name, "content": content, "client_id": content})
            assert reply["content"] == "success", reply
    clients = {name: await server.client() for name in names}
    for name, client in clients.items():  # all at once: no reply awaited in between
        client.send({"message_type": "login", "username": name, "token": tokens[name]})
    for name, client in clients.items():
        assert (await client.next("login", reply=True))["content"] == "success", name
    for name, client in clients.items():
        assert [(await client.next("word"))["content"] for _ in expected[name]] == expected[name]
    told = set()  # (u0's first login may have been announced after the friendship too)
    while told != {"u0", "u1"}:
        told.add((await watcher.next("friend_online"))["friend"])
    await task.deferLater(reactor, 0.3, lambda: None)
    assert not [name for name, client in clients.items() if client.of_type("word")], "a message came twice"


@pytest_twisted.ensureDeferred
async def test_token_expires(settings):
    settings.token_lifetime = 1
    running = await serve(settings)
    try:
        client = await running.client("json")
        assert (await register(client, "json", "ann"))[0]
        token = (await login(client, "json", "ann", PASSWORD, resume=True))[1]["token"]
        await task.deferLater(reactor, 2.1, lambda: None)
        other = await running.client("json")
        assert not (await login(other, "json", "ann", token=token))[0]
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_failed_logins_lock_the_account_but_not_the_others(strict, dialect):
    client = await strict.client(dialect)
    for name in ("ann", "bob"):
        assert (await register(client, dialect, name))[0]
    for _ in range(2):
        ok, reply = await login(client, dialect, "ann", "wrong")
        assert not ok and "wrong account or password" in str(reply)
    # The account must now wait, even with the right password.
    tripped = Tripped()
    ok, reply = await login(client, dialect, "ann", PASSWORD)
    assert not ok and "too many attempts, retry in 1 s" in str(reply)
    assert tripped["failed_logins_per_account"] == 1
    if dialect == "header":
        assert reply["stat"] == "429"
    assert (await login(client, dialect, "bob", PASSWORD))[0]


@pytest_twisted.ensureDeferred
async def test_registrations_per_address_are_limited(strict, dialect):
    client = await strict.client(dialect)
    for number in range(3):
        assert (await register(client, dialect, f"user{number}"))[0]
    tripped = Tripped()
    ok, reply = await register(client, dialect, "one-too-many")
    assert not ok and "too many attempts, retry in" in str(reply)
    assert tripped["registrations_per_address"] == 1
    assert (await login(client, dialect, "user0", PASSWORD))[0]


@pytest_twisted.ensureDeferred
async def test_closed_registration_is_refused_before_the_throttle_counts_it(strict, dialect):
    strict.root.accounts.admission.registration_open = False
    client = await strict.client(dialect)
    for _ in range(4):
        ok, reply = await register(client, dialect, "ann")
        assert not ok and "registration closed" in str(reply)
    strict.root.accounts.admission.registration_open = True
    assert (await register(client, dialect, "ann"))[0]


def test_throttle_tables_stay_bounded_and_forget():
    clock = task.Clock()
    throttle = Throttle(clock, ThrottleSettings(max_entries=100))
    for number in range(1000):
        throttle.login_failed(f"guess{number}", f"10.0.{number // 250}.{number % 250}", "chat")
        throttle.register(f"10.1.{number // 250}.{number % 250}")
    assert len(throttle.accounts.table) == len(throttle.addresses.table) == len(throttle.registrations) == 100
    clock.advance(2 * 3600 + 1)
    throttle.login_failed("late", "10.9.9.9", "chat")
    assert len(throttle.accounts.table) == 1


def test_address_is_banned_after_twenty_failures_for_an_hour():
    clock = task.Clock()
    throttle = Throttle(clock)
    for number in range(20):
        throttle.login_failed(f"name{number}", "10.0.0.1", "ftp")
    tripped = Tripped()
    with pytest.raises(TooManyAttempts, match="retry in 3600 s"):
        throttle.check_login("someone", "10.0.0.1")
    assert (tripped["failed_logins_per_address"], tripped["failed_logins_per_account"]) == (1, 0)
    throttle.check_login("someone", "10.0.0.2")
    clock.advance(3600)
    throttle.check_login("someone", "10.0.0.1")


@pytest_twisted.ensureDeferred
async def test_hash_pool_queues_then_answers_busy_and_recovers():
    pool = HashPool(reactor, threads=1, queue=1)
    release = threading.Event()
    try:
        running = [pool.run(release.wait, 10), pool.run(lambda: "queued")]
        tripped = Tripped()
        with pytest.raises(ServerBusy, match="server busy, retry"):
            pool.run(lambda: "refused")
        assert tripped["hash_queue"] == 1
        release.set()
        assert (await running[1]) == "queued"
        assert (await pool.run(lambda: "again")) == "again"
    finally:
        release.set()
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_password_hash_is_upgraded_at_login_when_the_parameters_changed(server):
    client = await server.client("json")
    assert (await register(client, "json", "ann"))[0]
    users = server.root.store.users
    assert ",t=1," in await users.password_hash("ann")
    server.root.accounts.hasher = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    assert (await login(client, "json", "ann", PASSWORD))[0]
    assert ",t=2,p=1$" in await users.password_hash("ann")
    other = await server.client("json")
    assert (await login(other, "json", "ann", PASSWORD))[0]


def test_throttle_options_change_the_settings_and_say_what_is_wrong():
    options = Options()
    options.parseOptions(["--throttle", "registrations_per_address=0", "--throttle", "account.lock_after=3",
                          "--throttle", "address.max_delay=2.5"])
    throttle = options.settings().throttle
    assert throttle.registrations_per_address == 0
    assert throttle.account == FailurePolicy(free=5, lock_after=3, lock_seconds=15 * 60)
    assert throttle.address.max_delay == 2.5
    for wrong, message in (("nonsense=1", "unknown throttle setting 'nonsense'"),
                           ("account=1", "unknown throttle setting 'account'"),
                           ("account.free=-1", "cannot be negative"), ("max_entries=0", "cannot be 0"),
                           ("account.free=many", "invalid literal")):
        with pytest.raises(usage.UsageError, match=message):
            Options().parseOptions(["--throttle", wrong])


@pytest_twisted.ensureDeferred
async def test_zero_turns_the_registration_limit_and_the_lockout_off(settings, dialect):
    no_lockout = FailurePolicy(free=0, lock_after=0, lock_seconds=600, max_delay=0)
    settings.throttle = ThrottleSettings(registrations_per_address=0, account=no_lockout, address=no_lockout)
    running = await serve(settings)
    try:
        client = await running.client(dialect)
        for number in range(8):  # past the default of 5
            assert (await register(client, dialect, f"user{number}"))[0]
        for _ in range(25):  # past a lockout after 20 failures, were there one
            ok, reply = await login(client, dialect, "user0", "wrong")
            assert not ok and "too many attempts" not in str(reply)
    finally:
        await running.stop()
