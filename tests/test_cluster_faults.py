"""Faults under load with real processes: ``twistd neochat`` nodes sharing
one MariaDB database and one Redis, clients on different nodes sending
messages with client ids.  A node killed with kill -9: its users log in on
another node and lose nothing acknowledged, and the others see them go
offline and come back.  A Redis and a MariaDB server of the test's own
killed and restarted: the nodes ride them out and lose nothing acknowledged
(docs/scaling.md, "Faults")."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread

from tests.clients import JsonClient
from tests.conftest import REDIS, REDIS_DB, _mysql_database, need_redis
from tests.test_cluster import wait_until

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from server import free_port, neochat  # noqa: E402  (bench/server.py: twistd in a subprocess)

PASSWORD = "pw"
HEARTBEAT = 0.5  # seconds: a node is dead after 1.5
WINDOW = 20  # messages in flight per sender
MAX_RESENDS = 50  # rounds of resending per sender, so that a broken server ends the test
SETTLE = 120  # seconds the load may take to finish after a fault (a loaded 2-core machine)


class Line(JsonClient):
    """Hands every message to ``handler`` once it is set."""

    handler = None

    def deliver(self, messages):
        if self.handler is None:
            super().deliver(messages)
        else:
            for message in messages:
                self.handler(message)

    def take_over(self, handler):
        """From now on (and what came before, replies aside) to ``handler``."""
        self.handler = handler
        waiting, self.received = self.received, []
        for message in waiting:
            handler(message)


class Member:
    """One account, logged in with acks, as a client program would be: when
    its connection drops it logs in again on the node it is told (a load
    balancer's choice)."""

    def __init__(self, name):
        self.name = name
        self.line = None
        self.logins = 0

    async def log_in(self, port, register=False, **extra):
        """(The benches' server options lift the registration limit.)"""
        line = await Line.connect(port)
        if register:
            reply = await line.request({"message_type": "register", "username": self.name, "password": PASSWORD})
            assert reply["content"] == "success", reply
        reply = await line.request({"message_type": "login", "username": self.name, "password": PASSWORD,
                                    "acks": True, **extra})
        assert reply["content"] == "success", reply
        self.line, self.logins = line, self.logins + 1
        line.take_over(self.received)
        self.logged_in()

    def logged_in(self):
        pass

    def received(self, message):
        pass


class Sender(Member):
    """Sends ``total`` private messages to ``to``, ``WINDOW`` in flight, each
    with a client id; resends what has no receipt after a new login or a
    failure reply (the client id makes that safe)."""

    def __init__(self, name, to, total):
        super().__init__(name)
        self.to, self.total = to, total
        self.unacknowledged = {}  # client id -> message
        self.receipts = {}  # client id -> {message ids answered}
        self.failures = []
        self.resends = 0
        self._resend_call = None
        self._next = 0

    def message(self, number):
        client_id = f"{self.name}-{number}"
        return {"message_type": "word", "chat_type": "private", "send_user": self.name, "rece_user": self.to,
                "content": client_id, "client_id": client_id}

    def logged_in(self):
        for message in self.unacknowledged.values():
            self.line.send(message)
        self.fill()

    def fill(self):
        while len(self.unacknowledged) < WINDOW and self._next < self.total:
            message = self.message(self._next)
            self._next += 1
            self.unacknowledged[message["client_id"]] = message
            self.line.send(message)

    def received(self, message):
        if message.get("message_type") != "word" or "send_user" in message:
            return
        if message["content"] == "success":
            self.receipts.setdefault(message["client_id"], set()).add(message["id"])
            self.unacknowledged.pop(message["client_id"], None)
            self.fill()
        else:
            self.failures.append(message)
            if self._resend_call is None and self.resends < MAX_RESENDS:
                self._resend_call = reactor.callLater(0.5, self._resend)

    def _resend(self):
        self._resend_call = None
        self.resends += 1
        for message in self.unacknowledged.values():
            self.line.send(message)

    def done(self):
        return len(self.receipts) == self.total

    def check(self):
        assert self.done(), f"{self.name}: {len(self.receipts)} of {self.total} acknowledged"
        assert all(len(ids) == 1 for ids in self.receipts.values()), "a resent message was stored twice"

    def stop(self):
        if self._resend_call is not None and self._resend_call.active():
            self._resend_call.cancel()


class Receiver(Member):
    """Acknowledges every message it gets; remembers (login, id, client id),
    the client id being the content (recipients are not told client ids)."""

    def __init__(self, name):
        super().__init__(name)
        self.got = []

    def received(self, message):
        if message.get("message_type") == "word" and "send_user" in message:
            self.got.append((self.logins, message["id"], message["content"]))
            self.line.send({"message_type": "ack", "id": [message["id"]]})

    def client_ids(self):
        return {client_id for _, _, client_id in self.got}

    def check(self, sender):
        """Everything acknowledged to ``sender`` arrived, each client id with
        one message id, and no id twice on one connection."""
        assert self.client_ids() == set(sender.receipts), f"{self.name}: missing or extra messages"
        ids_of = {}
        for _, message_id, client_id in self.got:
            ids_of.setdefault(client_id, set()).add(message_id)
        assert all(len(ids) == 1 for ids in ids_of.values()), "stored twice"
        per_login = [(login, message_id) for login, message_id, _ in self.got]
        assert len(per_login) == len(set(per_login)), "written twice to one connection"


class Watcher(Member):
    """Follows presence (delta form): who is online, who was seen leaving
    (in a ``left`` list, or missing from a whole ``online`` list)."""

    def __init__(self, name):
        super().__init__(name)
        self.online, self.left = set(), set()
        self.seen = []

    def received(self, message):
        if message.get("message_type") != "presence":
            return
        self.seen.append(message)
        if "online" in message:
            online = set(message["online"])
            self.left |= self.online - online
            self.online = online
        else:
            self.online |= set(message["joined"])
            self.online -= set(message["left"])
            self.left |= set(message["left"])


class Nodes:
    """``twistd neochat`` processes of one cluster (bench/server.py's launcher:
    free ports, stopped by PID at the end), each with its data dir and log
    under ``directory``."""

    def __init__(self, directory, db_url, redis_url=f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}"):
        self.directory, self.db_url, self.redis_url = directory, db_url, redis_url
        self.prefix = f"neochat-test:{uuid.uuid4().hex}:"
        self.stack = ExitStack()
        self.ports, self.processes = [], []

    def start(self, count, *options):
        """Start ``count`` nodes, one after the other (the first upgrades the
        schema); if one does not start, stop those that did."""
        try:
            for number in range(count):
                port, process = self.stack.enter_context(neochat(
                    "--db", self.db_url, "--cluster", self.redis_url,
                    "--node-id", f"n{number}", "--cluster-prefix", self.prefix,
                    "--cluster-heartbeat", str(HEARTBEAT), *options, data_dir=self.directory / f"n{number}"))
                self.ports.append(port)
                self.processes.append(process)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, number):
        self.processes[number].send_signal(signal.SIGKILL)
        self.processes[number].wait(10)

    def running(self, number):
        process = self.processes[number]
        return process.is_running() and process.status() != "zombie"

    def stop(self):
        self.stack.close()


@pytest.fixture
def three_processes(cluster_db, tmp_path):
    nodes = Nodes(tmp_path, cluster_db).start(3)
    yield nodes
    nodes.stop()


async def all_done(members, seconds=SETTLE):
    return await wait_until(lambda: all(member.done() for member in members), seconds)


@pytest_twisted.ensureDeferred
async def test_a_node_killed_mid_load_loses_nothing_acknowledged(three_processes):
    nodes = three_processes
    n0, n1, n2 = nodes.ports
    # s0 on n0 writes to r0 on n1, s1 on n1 to r1 on n2, s2 on n2 to r2 on n0: n0 dies.
    receivers = [Receiver("r0"), Receiver("r1"), Receiver("r2")]
    senders = [Sender(f"s{number}", f"r{number}", total=400) for number in range(3)]
    watcher = Watcher("watcher")
    everyone = {"watcher", "r0", "r1", "r2", "s0", "s1", "s2"}
    await watcher.log_in(n1, register=True, presence="delta")
    for receiver, port in zip(receivers, (n1, n2, n0)):
        await receiver.log_in(port, register=True)
    try:
        for sender, port in zip(senders, (n0, n1, n2)):
            await sender.log_in(port, register=True)
        assert await wait_until(lambda: watcher.online == everyone), watcher.online
        assert await wait_until(lambda: len(senders[0].receipts) >= 100, SETTLE)

        nodes.kill(0)
        assert await wait_until(lambda: {"s0", "r2"} <= watcher.left), watcher.seen
        assert watcher.online == everyone - {"s0", "r2"}
        await senders[0].log_in(n1)
        await receivers[2].log_in(n2)
        assert await wait_until(lambda: watcher.online == everyone), "n0's users never came back"

        assert await all_done(senders), [len(sender.receipts) for sender in senders]
        for sender, receiver in zip(senders, receivers):
            assert await wait_until(lambda: receiver.client_ids() == set(sender.receipts), SETTLE)
            sender.check()
            receiver.check(sender)
        assert nodes.running(1) and nodes.running(2)
    finally:
        for sender in senders:
            sender.stop()


class PrivateServer:
    """A server process of the test's own, on a free loopback port with its
    own files, so that killing it disturbs nobody else on the machine."""

    name = None

    def __init__(self, directory):
        self.directory = directory
        self.log = directory / f"{self.name}.log"
        self.port = free_port()
        self.process = None

    def command(self):
        raise NotImplementedError

    def answers(self):
        raise NotImplementedError

    def start(self):
        """Start it and wait (at most 60 s) until it answers."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            if self.answers():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: see {self.log}")
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"{self.name} did not answer in 60 s: see {self.log}")

    def kill(self):
        """kill -9, as a crash or the OOM killer would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    async def restart_after(self, seconds):
        self.kill()
        await task.deferLater(reactor, seconds, lambda: None)
        await deferToThread(self.start)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.kill()


class PrivateMariaDB(PrivateServer):
    name = "mariadbd"

    def __init__(self, directory):
        super().__init__(directory)
        self.user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={directory / 'data'}", "--skip-test-db",
                        "--auth-root-authentication-method=normal", *self.user],
                       check=True, capture_output=True, timeout=120)

    def command(self):
        return ["mariadbd", "--no-defaults", f"--datadir={self.directory / 'data'}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.directory / 'mariadb.sock'}",
                f"--pid-file={self.directory / 'mariadb.pid'}", "--innodb-buffer-pool-size=16M", "--skip-log-bin",
                *self.user]

    def connect(self):
        import MySQLdb

        return MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", passwd="")

    def answers(self):
        import MySQLdb

        try:
            self.connect().close()
            return True
        except MySQLdb.OperationalError:
            return False


class PrivateRedis(PrivateServer):
    name = "redis-server"

    def command(self):
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory)]

    def answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


@pytest.fixture
def private_mariadb(tmp_path):
    if not (shutil.which("mariadbd") and shutil.which("mariadb-install-db")):
        pytest.skip("mariadbd is not installed: no private MariaDB server to kill")
    need_redis()
    server = PrivateMariaDB(tmp_path)
    server.start()
    connection = server.connect()
    connection.cursor().execute("CREATE DATABASE neochat CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    connection.close()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_the_nodes_ride_out_a_mariadb_restart(private_mariadb):
    nodes = Nodes(private_mariadb.directory, f"mysql://root@127.0.0.1:{private_mariadb.port}/neochat")
    nodes.start(2, "--db-retry", "60")
    n0, n1 = nodes.ports
    alice, bob = Sender("alice", "bob", total=300), Receiver("bob")
    try:
        await bob.log_in(n1, register=True)
        await alice.log_in(n0, register=True)
        assert await wait_until(lambda: len(alice.receipts) >= 60, SETTLE)
        await private_mariadb.restart_after(1)  # InnoDB recovers what was committed
        assert await all_done([alice]), len(alice.receipts)
        assert await wait_until(lambda: bob.client_ids() == set(alice.receipts), SETTLE)
        alice.check()
        bob.check(alice)
        assert alice.failures == [], "a request failed instead of waiting for the database"
        assert nodes.running(0) and nodes.running(1)
        await Receiver("carol").log_in(n1, register=True)  # the nodes serve new work
    finally:
        alice.stop()
        nodes.stop()


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed: no private Redis to kill")
    server = PrivateRedis(tmp_path)
    server.start()
    db_url, drop = _mysql_database()
    yield server, db_url
    server.stop()
    drop()


@pytest_twisted.ensureDeferred
async def test_the_nodes_ride_out_a_redis_restart(private_redis):
    """Redis comes back empty: the nodes reconnect, write who is on them
    again, and replay what was announced while nobody listened."""
    redis, db_url = private_redis
    nodes = Nodes(redis.directory, db_url, f"redis://127.0.0.1:{redis.port}/0").start(2)
    n0, n1 = nodes.ports
    alice, bob, watcher = Sender("alice", "bob", total=300), Receiver("bob"), Watcher("watcher")
    try:
        await watcher.log_in(n1, register=True, presence="delta")
        await bob.log_in(n1, register=True)
        await alice.log_in(n0, register=True)
        assert await wait_until(lambda: watcher.online == {"alice", "bob", "watcher"}), watcher.seen
        assert await wait_until(lambda: len(alice.receipts) >= 60, SETTLE)
        await redis.restart_after(1)
        assert await all_done([alice]), len(alice.receipts)
        assert await wait_until(lambda: bob.client_ids() == set(alice.receipts), SETTLE)
        alice.check()
        bob.check(alice)
        await Receiver("carol").log_in(n0, register=True)  # presence crosses nodes again
        assert await wait_until(lambda: watcher.online == {"alice", "bob", "watcher", "carol"}), watcher.seen
    finally:
        alice.stop()
        nodes.stop()
