"""The FTP file server against real ftplib clients, on SQLite and MariaDB.

Clients block, so every session runs in ``deferToThread`` while the reactor
serves the FTP thread's database questions.
"""

import ftplib
import hashlib
import io
import os
import re
import socket
import ssl
import struct
import threading
import time

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread

from neochat.chat.accounts import Accounts
from neochat.chat.files import DAY_MS, PARTIAL_DIR, FileLibrary, references
from neochat.chat.model import now_ms
from neochat.chat.throttle import TooManyAttempts
from neochat.services.ftp import FTPService, FtpSettings
from neochat.store import Database, dialect_from_url
from neochat.store.files import FileStore
from neochat.store.schema import upgrade
from neochat.store.users import UserStore
from tests.conftest import Tripped

ALICE, BOB, CAROL = "+86101", "+8200001", "carol"
PASSWORDS = {ALICE: "alice-pw", BOB: "bob-pw", CAROL: "carol-pw"}
TIMEOUT = 10


class World:
    """A database with three accounts, a file library and an FTP service."""

    def __init__(self, db_url, tmp_path):
        self.db = Database(dialect_from_url(db_url, tmp_path), reactor)
        self.directory = tmp_path / "data" / "files"
        cheap = PasswordHasher(time_cost=1, memory_cost=1024)
        self.accounts = Accounts(UserStore(self.db), cheap, reactor)
        self.library = None
        self.ftp = None

    async def open(self):
        await upgrade(self.db)
        for account, password in PASSWORDS.items():
            await self.accounts.register(account, password)

    async def start_ftp(self, **overrides):
        """(Re)start the FTP service with these FtpSettings."""
        await self.stop_ftp()
        settings = FtpSettings(interface="127.0.0.1", port=0, auth_failed_delay=0.01, **overrides)
        self.library = FileLibrary(FileStore(self.db), self.directory, settings.file_limits(), reactor)
        self.ftp = FTPService(self.library, self.accounts, settings, reactor)
        self.ftp.startService()

    async def stop_ftp(self):
        if self.ftp is not None and self.ftp.running:
            await self.ftp.stopService()

    @property
    def port(self):
        return self.ftp.address[1]

    def visible(self):
        return sorted(set(os.listdir(self.directory)) - {PARTIAL_DIR})

    def partials(self):
        return os.listdir(self.directory / PARTIAL_DIR)

    async def rows(self):
        names = await self.db.run(lambda txn: txn.execute("SELECT name FROM files ORDER BY name").fetchall())
        return [row[0] for row in names]

    def session(self, function, *args, account=ALICE):
        """Run ``function(ftp, *args)`` in a thread on a logged-in session."""
        def run():
            with login(self.port, account) as ftp:
                return function(ftp, *args)
        return deferToThread(run)


@pytest_twisted.async_yield_fixture
async def world(db_url, tmp_path):
    made = World(db_url, tmp_path)
    await made.open()
    await made.start_ftp()
    yield made
    await made.stop_ftp()
    made.accounts.pool.stop()
    made.db.close()


def connect(port):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=TIMEOUT)
    return ftp


def login(port, account, password=None):
    ftp = connect(port)
    ftp.login(account, PASSWORDS[account] if password is None else password)
    return ftp


def upload(ftp, command, data):
    """Send ``command`` (STOR/STOU) with ``data``: (preliminary, final) replies."""
    ftp.voidcmd("TYPE I")
    conn = socket.create_connection(ftp.makepasv(), timeout=TIMEOUT)
    try:
        preliminary = ftp.sendcmd(command)
        conn.sendall(data)
    finally:
        conn.close()
    return preliminary, ftp.voidresp()


def name_in_reply(final_reply):
    match = re.fullmatch(r"226 Transfer complete\. file: (\S+)", final_reply)
    assert match, final_reply
    return match.group(1)


def store(ftp, original, data):
    return name_in_reply(upload(ftp, f"STOR {original}", data)[1])


def download(ftp, name):
    received = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", received.write)
    return received.getvalue()


def refused(function, *args):
    """The reply of an FTP command expected to fail."""
    with pytest.raises(ftplib.Error) as failure:
        function(*args)
    return str(failure.value)


def refused_download(ftp, name):
    return refused(download, ftp, name)


@defer.inlineCallbacks
def eventually(condition, seconds=5):
    """Wait (without blocking the reactor) until ``condition()`` holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        yield task.deferLater(reactor, 0.01, lambda: None)


# -- login --------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_login_with_account_password(world):
    welcome = yield deferToThread(lambda: login(world.port, ALICE).quit())
    assert welcome.startswith("221")


@pytest_twisted.inlineCallbacks
def test_login_refused_for_wrong_password_unknown_user_and_anonymous(world):
    def attempts():
        replies = []
        for account, password in ((ALICE, "wrong"), ("nobody", "x"), ("anonymous", "guest@")):
            with connect(world.port) as ftp:
                replies.append(refused(ftp.login, account, password))
                replies.append(refused(ftp.nlst))
        return replies

    replies = yield deferToThread(attempts)
    assert [reply[:3] for reply in replies] == ["530"] * 6
    assert "Anonymous access not allowed" in replies[4]


@pytest_twisted.inlineCallbacks
def test_ftp_failures_count_in_the_same_throttle_as_chat_logins(world):
    def guesses():
        replies = []
        for _ in range(6):
            with connect(world.port) as ftp:
                replies.append(refused(ftp.login, BOB, "wrong"))
        return replies

    replies = yield deferToThread(guesses)
    assert replies[-1] == "530 Too many attempts, retry in 1 s."
    with pytest.raises(TooManyAttempts):
        yield world.accounts.authenticate(BOB, PASSWORDS[BOB], "127.0.0.1")


@pytest_twisted.inlineCallbacks
def test_noop_answers_while_other_clients_wait_for_password_checks(world, monkeypatch):
    check_seconds = 3.0

    def slow_check(account, password):
        return task.deferLater(reactor, check_seconds, lambda: None)

    def session():
        with login(world.port, ALICE) as ftp:
            ready.set()
            go.wait(TIMEOUT)
            started = time.monotonic()
            ftp.voidcmd("NOOP")
            return time.monotonic() - started

    ready, go = threading.Event(), threading.Event()
    noop = deferToThread(session)
    yield deferToThread(ready.wait, TIMEOUT)
    monkeypatch.setattr(world.accounts, "check_password", slow_check)
    guessers = []
    for _ in range(8):
        guesser = socket.create_connection(("127.0.0.1", world.port), timeout=TIMEOUT)
        guesser.sendall(b"USER carol\r\nPASS guess\r\n")
        guessers.append(guesser)
    yield task.deferLater(reactor, 0.3, lambda: None)  # the guesses reach the FTP thread
    go.set()
    try:
        assert (yield noop) < check_seconds / 2
    finally:
        for guesser in guessers:
            guesser.close()


@pytest_twisted.inlineCallbacks
def test_an_upload_is_answered_after_its_commit_and_other_sessions_go_on_meanwhile(world, monkeypatch):
    gate = defer.Deferred()
    add = world.library.store.add
    monkeypatch.setattr(world.library.store, "add", lambda *args: gate.addCallback(lambda _: add(*args)))
    uploaded = world.session(store, "slow.bin", b"waits for its commit")
    yield eventually(lambda: world.visible())  # received, fsynced and linked: only the row is missing

    def meanwhile(ftp):
        ftp.voidcmd("NOOP")
        return ftp.nlst()

    assert (yield world.session(meanwhile, account=BOB)) == []
    assert not uploaded.called and (yield world.rows()) == []
    gate.callback(None)
    name = yield uploaded
    assert (yield world.rows()) == [name] == world.visible()


@pytest_twisted.inlineCallbacks
def test_a_streamed_upload_records_the_sha256_of_the_stored_file(world):
    data = os.urandom(3 * 1024 * 1024 + 5)  # past the part hashed by the receiving thread
    name = yield world.session(store, "big.bin", data)
    row = yield world.library.store.get(name)
    assert row["sha256"] == hashlib.sha256((world.directory / name).read_bytes()).hexdigest()
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size"] == len(data)


# -- naming ---------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_stor_names_the_file_and_replies_with_the_name(world):
    before = now_ms()
    name = yield world.session(store, "a.png", b"png bytes")
    match = re.fullmatch(r"%2B86101_(\d{13})_a\.png", name)
    assert match and before <= int(match.group(1)) <= now_ms()
    assert world.visible() == [name] and world.partials() == []
    assert (world.directory / name).read_bytes() == b"png bytes"
    assert (yield world.rows()) == [name]


@pytest_twisted.inlineCallbacks
def test_stou_announces_the_stored_name_before_the_data(world):
    def stou(ftp):
        return upload(ftp, "STOU a.png", b"one"), upload(ftp, "STOU", b"two")

    (first, first_final), (second, second_final) = yield world.session(stou)
    for preliminary, final in ((first, first_final), (second, second_final)):
        code, announced = preliminary.split(" FILE: ")
        assert code in ("125", "150")  # data connection already open, or not
        assert name_in_reply(final) == announced
    assert re.fullmatch(r"%2B86101_\d{13}_a\.png", name_in_reply(first_final))
    assert re.fullmatch(r"%2B86101_\d{13}_file", name_in_reply(second_final))
    assert world.visible() == sorted([name_in_reply(first_final), name_in_reply(second_final)])


@pytest_twisted.inlineCallbacks
def test_traversal_attempts_are_sanitised_or_refused(world):
    def attempts(ftp):
        originals = ("../x.txt", "/abs/y.txt", "a/b/z.txt", "../../..")
        names = [store(ftp, original, b"x") for original in originals]
        replies = [refused(download, ftp, path) for path in
                   ("../../etc/passwd", "/etc/passwd", f"../{PARTIAL_DIR}", f"{PARTIAL_DIR}/anything")]
        replies += [refused(ftp.cwd, PARTIAL_DIR), refused(ftp.mkd, "sub")]
        ftp.cwd("..")  # "/.." is "/"
        return names, replies, ftp.pwd()

    names, replies, cwd = yield world.session(attempts)
    assert [name.split("_", 2)[2] for name in names] == ["x.txt", "y.txt", "z.txt", "file"]
    assert world.visible() == sorted(names)
    assert sorted(os.listdir(world.directory.parent)) == ["files"]
    assert [reply[:3] for reply in replies] == ["550"] * 6
    assert cwd == "/"


# -- reading --------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_only_readers_download_until_a_message_grants_the_recipient(world):
    name = yield world.session(store, "a.png", b"secret")
    assert (yield world.session(download, name)) == b"secret"
    assert (yield world.session(refused_download, name, account=BOB)).startswith("550")
    assert (yield world.session(lambda ftp: ftp.nlst(), account=BOB)) == []

    text = f"你好 <file>{name}</file>"
    assert (yield world.library.grant_for_message(BOB, references(text), recipients=[CAROL])) == []
    assert (yield world.library.grant_for_message(ALICE, references(text), recipients=[BOB])) == [name]
    assert (yield world.session(download, name, account=BOB)) == b"secret"
    assert (yield world.session(lambda ftp: ftp.nlst(), account=BOB)) == [name]
    assert (yield world.session(refused_download, name, account=CAROL)).startswith("550")


@pytest_twisted.inlineCallbacks
def test_a_group_grant_covers_the_groups_members(world):
    name = yield world.session(store, "g.txt", b"for the group")

    join = "INSERT INTO group_users (group_id, user_account, join_time) VALUES (?, ?, ?)"

    def make_group(txn):
        txn.execute("INSERT INTO chat_groups (group_id, founder, create_time) VALUES (?, ?, ?)",
                    ("g1", ALICE, 1))
        txn.execute(join, ("g1", ALICE, 1))

    yield world.db.run(make_group)
    assert (yield world.library.grant_for_message(ALICE, [name], group_id="g1")) == [name]
    assert (yield world.session(refused_download, name, account=CAROL)).startswith("550")
    yield world.db.run(lambda txn: txn.execute(join, ("g1", CAROL, 2)))
    assert (yield world.session(download, name, account=CAROL)) == b"for the group"
    assert (yield world.session(lambda ftp: ftp.nlst(), account=CAROL)) == [name]
    assert (yield world.session(lambda ftp: ftp.nlst())) == [name]  # owner and member: listed once


@pytest_twisted.inlineCallbacks
def test_listing_shows_the_files_the_user_may_read(world):
    mine = yield world.session(store, "mine.txt", b"12345")
    theirs = yield world.session(store, "theirs.txt", b"x", account=BOB)

    def listings(ftp):
        lines = []
        ftp.retrlines("LIST", lines.append)
        names = ftp.nlst()
        ftp.voidcmd("TYPE I")  # SIZE wants binary mode
        return names, lines, ftp.size(mine), refused(ftp.size, theirs)

    names, lines, size, size_refused = yield world.session(listings)
    assert names == [mine]
    assert len(lines) == 1 and lines[0].split()[4] == "5" and lines[0].endswith(mine)
    assert size == 5 and size_refused.startswith("550")


@pytest_twisted.inlineCallbacks
def test_only_the_owner_deletes_and_nothing_is_renamed_or_appended(world):
    name = yield world.session(store, "a.txt", b"x")
    yield world.library.grant_for_message(ALICE, [name], recipients=[BOB])

    def bob_tries(ftp):
        return [refused(ftp.delete, name), refused(ftp.rename, name, "b.txt"),
                refused(ftp.sendcmd, f"SITE CHMOD 777 {name}"), refused(ftp.rmd, "x"),
                refused(upload, ftp, f"APPE {name}", b"more")]

    replies = yield world.session(bob_tries, account=BOB)
    assert [reply[:3] for reply in replies] == ["550"] * 5
    assert (yield world.session(lambda ftp: ftp.delete(name))).startswith("250")
    assert world.visible() == [] and (yield world.rows()) == []


# -- limits ---------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_max_file_size_is_enforced_while_streaming(world):
    yield world.start_ftp(max_file_size=1000)
    name = yield world.session(store, "ok.bin", b"x" * 1000)
    tripped = Tripped()
    reply = yield world.session(lambda ftp: refused(upload, ftp, "STOR big.bin", b"x" * 200_000))
    assert reply.startswith("552") and "1000-byte limit" in reply
    assert tripped["max_file_size"] == 1
    assert world.visible() == [name] and world.partials() == []
    assert (yield world.rows()) == [name]


@pytest_twisted.inlineCallbacks
def test_quota_is_enforced_while_streaming_and_before(world):
    yield world.start_ftp(user_quota=3000)

    def fill(ftp):
        names = [store(ftp, "a.bin", b"x" * 2000)]
        over = refused(upload, ftp, "STOR b.bin", b"x" * 200_000)
        names.append(store(ftp, "c.bin", b"x" * 1000))
        full = refused(ftp.sendcmd, "STOR d.bin")  # refused before any data
        return names, over, full

    tripped = Tripped()
    names, over, full = yield world.session(fill)
    assert over.startswith("552") and full.startswith("552") and "quota" in full
    assert tripped["user_quota"] == 2
    assert world.visible() == sorted(names) and world.partials() == []
    assert (yield world.rows()) == sorted(names)
    bobs = yield world.session(store, "bob.bin", b"x" * 3000, account=BOB)  # a quota each
    assert bobs in world.visible()


# -- uploads cut off ----------------------------------------------------------------

def start_upload(ftp, data):
    """STOR with ``data`` sent but the data connection left open."""
    ftp.voidcmd("TYPE I")
    conn = socket.create_connection(ftp.makepasv(), timeout=TIMEOUT)
    ftp.sendcmd("STOR cut.bin")
    conn.sendall(data)
    time.sleep(0.2)  # let the server write it to .partial
    return conn


def abort_midway(ftp):
    conn = start_upload(ftp, b"x" * 100_000)
    first = ftp.abort()
    second = ftp.getresp() if first.startswith("426") else ""
    conn.close()
    return first + " / " + second


def reset_midway(ftp):
    conn = start_upload(ftp, b"x" * 100_000)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST
    return refused(ftp.voidresp)


def client_dies_midway(port):
    ftp = login(port, ALICE)
    conn = start_upload(ftp, b"x" * 100_000)
    ftp.close()  # the process dies: both connections close
    conn.close()


@pytest_twisted.inlineCallbacks
def test_an_upload_cut_off_midway_leaves_nothing(world):
    aborted = yield world.session(abort_midway)
    assert aborted.startswith(("225", "426"))
    reset = yield world.session(reset_midway)
    assert reset.startswith("426")
    yield deferToThread(client_dies_midway, world.port)
    yield eventually(lambda: world.partials() == [])
    assert world.visible() == []
    assert (yield world.rows()) == []
    name = yield world.session(store, "after.bin", b"still works")
    assert world.visible() == [name]


# -- retention and account deletion ---------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_retention_purge_removes_file_and_row_together(world):
    old = yield world.session(store, "old.txt", b"x")
    assert (yield world.library.purge_expired(now=now_ms() + 10 * DAY_MS)) == 0  # kept forever
    yield world.start_ftp(retention_days=1)
    assert (yield world.library.purge_expired()) == 0
    yield world.db.run(lambda txn: txn.execute(
        "UPDATE files SET create_time = ? WHERE name = ?", (now_ms() - 2 * DAY_MS, old)))
    new = yield world.session(store, "new.txt", b"y")
    assert (yield world.library.purge_expired()) == 1
    assert world.visible() == [new] and (yield world.rows()) == [new]
    assert (yield world.session(refused_download, old)).startswith("550")


@pytest_twisted.inlineCallbacks
def test_deleting_an_account_removes_its_files_and_rows(world):
    def two(ftp):
        return [store(ftp, "1.txt", b"1"), store(ftp, "2.txt", b"2")]

    yield world.session(two)
    bobs = yield world.session(store, "b.txt", b"b", account=BOB)
    assert (yield world.library.delete_account_files(ALICE)) == 2
    assert world.visible() == [bobs] and (yield world.rows()) == [bobs]


# -- shutdown -----------------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_shutdown_drops_connections_and_leaves_no_thread(world):
    ftp = yield deferToThread(login, world.port, ALICE)
    conn = yield deferToThread(start_upload, ftp, b"x" * 50_000)
    assert any(thread.name == "neochat-ftp" for thread in threading.enumerate())
    yield world.ftp.stopService()
    yield eventually(lambda: not any(thread.name == "neochat-ftp" for thread in threading.enumerate()))
    assert world.partials() == [] and world.visible() == []
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        yield deferToThread(ftp.voidresp)
    conn.close()
    ftp.close()


# -- FTPS -------------------------------------------------------------------------

def self_signed_certificate(directory):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(certfile), str(keyfile)


@pytest_twisted.inlineCallbacks
def test_ftps_when_a_certificate_is_given(world, tmp_path):
    certfile, keyfile = self_signed_certificate(tmp_path)
    yield world.start_ftp(certfile=certfile, keyfile=keyfile, tls_required=True)

    def plain():
        with connect(world.port) as ftp:
            return refused(ftp.login, ALICE, PASSWORDS[ALICE])

    def secure():
        ftp = ftplib.FTP_TLS(context=ssl._create_unverified_context(), timeout=TIMEOUT)
        with ftp:
            ftp.connect("127.0.0.1", world.port)
            ftp.login(ALICE, PASSWORDS[ALICE])  # AUTH TLS first
            ftp.prot_p()
            name = name_in_reply(ftp.storbinary("STOR a.txt", io.BytesIO(b"over tls")))
            return name, download(ftp, name)

    assert (yield deferToThread(plain)).startswith("550")
    name, data = yield deferToThread(secure)
    assert data == b"over tls" and world.visible() == [name]
