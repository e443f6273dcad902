"""Prosody and ejabberd for the chat workloads of bench/bench_chat.py: each
server as Debian packages it (``apt-get install prosody ejabberd``), started
on a free loopback port with a throwaway configuration and data directory
(never the system service), and a minimal XMPP client as the workloads'
dialect (``XMPP``).

The client speaks raw XML over TCP without TLS: stream header, in-band
registration (XEP-0077), SASL PLAIN, stream restart, resource binding and
initial presence, then ``<message type='chat'>`` to the peer's full JID with
the send time as the body.  The servers keep their default password storage
(Prosody salted PBKDF2 with 10 000 iterations, ejabberd plain) and store no
message that is delivered online; their rate limits and shapers are not
loaded, Prosody runs with Nagle's algorithm off (with it on, its deliveries
wait for the receivers' delayed ACKs: a third of the rate) and ejabberd with
a listen backlog of 1024 (its default of 5 makes logins wait for SYN
retransmits).
"""

import base64
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from bench.bench_chat import Dialect
from bench.server import free_port, serving

DOMAIN = "localhost"
STREAM = (f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()
FEATURES = re.compile(rb"</stream:features>")
REGISTERED = re.compile(rb"<iq[^>]*\bid=['\"]reg['\"][^>]*>")
AUTHENTICATED = re.compile(rb"<(success|failure)\b")
BOUND = re.compile(rb"<iq[^>]*\bid=['\"]bind['\"][^>]*>")
BODY = re.compile(rb"<body>([^<]*)</body>")
RESOURCE = "b"


class Client(Protocol):
    """Waits for one pattern at a time while logging in (``expect``), then
    hands the number in each received ``<body>`` to ``on_word``."""

    def __init__(self):
        self.buffer = b""
        self.waiting = None  # (pattern, Deferred)
        self.on_word = None

    def dataReceived(self, data):
        self.buffer += data
        if self.waiting is not None:
            self._match()
        elif self.on_word is not None:
            self._bodies()
        else:
            self.buffer = b""  # an idle client reads and forgets

    def expect(self, request, pattern):
        """Sends ``request``; fires with the match of ``pattern`` in what comes back."""
        waiter = defer.Deferred()
        self.waiting = pattern, waiter
        self.transport.write(request)
        self._match()
        return waiter

    def _match(self):
        pattern, waiter = self.waiting
        match = pattern.search(self.buffer)
        if match is not None:
            self.waiting = None
            self.buffer = self.buffer[match.end():]
            waiter.callback(match)

    def _bodies(self):
        end = 0
        for match in BODY.finditer(self.buffer):
            self.on_word(float(match.group(1)))
            end = match.end()
        rest = self.buffer[end:]
        partial = rest.rfind(b"<body>")  # else at most the start of one at the end
        self.buffer = rest[partial:] if partial >= 0 else rest[-len(b"<body"):]


async def connect(reactor, port, name):
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
    await client.expect(STREAM, FEATURES)
    reply = await client.expect(
        b"<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
        b"<username>%s</username><password>pw</password></query></iq>" % name.encode(), REGISTERED)
    assert b"result" in reply.group(0), f"registration of {name} refused: {reply.group(0)!r}"
    plain = base64.b64encode(b"\0%s\0pw" % name.encode())
    reply = await client.expect(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % plain, AUTHENTICATED)
    assert reply.group(1) == b"success", f"login of {name} refused"
    await client.expect(STREAM, FEATURES)
    reply = await client.expect(
        b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>%s</resource></bind></iq><presence/>" % RESOURCE.encode(), BOUND)
    assert b"result" in reply.group(0), f"bind of {name} refused: {reply.group(0)!r}"
    return client


def word(pair):
    tag, _, n = pair.rpartition("-")
    return (f"<message to='{tag}-r{n}@{DOMAIN}/{RESOURCE}' type='chat'>"
            f"<body>{time.perf_counter()!r}</body></message>").encode()


XMPP = Dialect(connect, word)

PROSODY_CONFIG = """\
run_as_root = true
daemonize = false
pidfile = "{data}/prosody.pid"
data_path = "{data}"
log = {{ error = "{data}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
allow_registration = true
authentication = "internal_hashed"
modules_enabled = {{ "roster", "saslauth", "disco", "register", "ping" }}
network_settings = {{ nagle = false }}
VirtualHost "{domain}"
"""

EJABBERD_CONFIG = """\
hosts: ["{domain}"]
loglevel: error
registration_timeout: infinity
listen:
  - port: {port}
    ip: "127.0.0.1"
    backlog: 1024
    module: ejabberd_c2s
    starttls_required: false
access_rules:
  register:
    allow: all
modules:
  mod_register:
    ip_access: all
    access: register
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
"""

EJABBERD_LIBS = "/usr/lib/x86_64-linux-gnu"


def installed():
    """{name: server()} for the XMPP servers found on this machine."""
    servers = {}
    if shutil.which("prosody"):
        servers["Prosody"] = prosody
    if shutil.which("ejabberdctl") and shutil.which("erl"):
        servers["ejabberd"] = ejabberd
    return servers


@contextlib.contextmanager
def prosody(cpu=None):
    """Prosody on a free loopback port: (port, psutil.Process)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-prosody-") as data:
        config = os.path.join(data, "prosody.cfg.lua")
        with open(config, "w") as file:
            file.write(PROSODY_CONFIG.format(data=data, port=port, domain=DOMAIN))
        with serving(["prosody", "--config", config], port, cpu, f"see {data}/prosody.log") as server:
            yield port, server


@contextlib.contextmanager
def ejabberd(cpu=None):
    """ejabberd (its Erlang VM run directly, as ``ejabberdctl foreground``
    would, but as this user) on a free loopback port: (port, psutil.Process)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ejabberd-") as data:
        config = os.path.join(data, "ejabberd.yml")
        with open(config, "w") as file:
            file.write(EJABBERD_CONFIG.format(port=port, domain=DOMAIN))
        env = dict(os.environ, HOME=data, EJABBERD_CONFIG_PATH=config, ERL_LIBS=EJABBERD_LIBS,
                   EJABBERD_LOG_PATH=os.path.join(data, "ejabberd.log"), ERL_MAX_PORTS="65536",
                   ERL_CRASH_DUMP=os.path.join(data, "erl_crash.dump"))
        command = ["erl", "-sname", f"bench{port}@localhost", "+K", "true",
                   "+P", "250000", "-noinput", "-mnesia", "dir", f'"{data}/db"', "-s", "ejabberd"]
        with serving(command, port, cpu, f"see {data}/ejabberd.log", env=env, cwd=data,
                     stdout=subprocess.DEVNULL) as server:
            yield port, server
