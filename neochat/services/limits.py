"""Limits of the message server: what one connection, one address and the
whole port may use, before and after login.  docs/protocol.md ("Limits")
lists each one, its default and the error it produces.

The shapes follow ``twisted.protocols.policies``: ``ConnectionCounter`` is
``LimitConnectionsByPeer`` plus a total, ``Pacer`` is a per-connection
``ThrottlingFactory`` that stops taking requests (and so, once the
dialect's buffer fills, stops reading the socket) instead of dropping
anything.  ``services/keeper.py`` keeps them for one connection, TCP or WebSocket.
"""

import resource
from dataclasses import dataclass
from functools import partial

from neochat.chat import audit
from neochat.chat.groups import MAX_MEMBERS
from neochat.chat.overrides import override
from neochat.services.header_upload import is_upload
from neochat.services.voice import is_voice
from neochat.wire.headers import BodyChunk, BodyEnd, HeaderDecoder, encode_message
from neochat.wire.json_stream import JsonStreamDecoder, RawChunk, encode

KIB, MIB = 1024, 1024 * 1024
HEADER_LINE = 8 * KIB  # the header decoder's line limit after login
DESCRIPTOR_RESERVE = 256  # at least this many descriptors stay free for FTP, files and the database
RESERVE_SHARE = 0.05  # ...or this share of the descriptor limit, if more
BODY_BYTES = (RawChunk, BodyChunk, BodyEnd)  # a streamed body's pieces: not requests
FRAME_SIZES = ("frame_before_login", "json_object", "header_frame", "header_body")  # these cannot be off


@dataclass(frozen=True)
class Limits:
    """Each limit; 0 turns a limit off, except for the frame sizes."""

    frame_before_login: int = 8 * KIB  # bytes of one JSON object, header line or body before login
    bytes_before_login: int = 64 * KIB  # bytes a connection may send before it is logged in
    json_object: int = 64 * KIB  # bytes of one JSON object after login
    header_frame: int = 256 * KIB  # bytes of one header-dialect body after login...
    header_body: int = 16 * MIB  # ...of a voice clip; a refused body declared longer closes the connection
    login_timeout: float = 60.0  # seconds from connect to a successful login
    idle_timeout: float = 600.0  # seconds without a byte from a logged-in client
    connections_per_address: int = 20
    connections_total: int = 0  # 0: the descriptor limit less a reserve (5 %, at least 256)
    messages_per_second: float = 50.0  # requests run per connection, sustained...
    message_burst: int = 200  # ...and at once
    bytes_per_second: float = 8 * MIB  # bytes read per connection, sustained...
    byte_burst: int = 32 * MIB  # ...and at once
    max_group_size: int = MAX_MEMBERS
    voice_spool_per_sender: int = 64 * MIB  # bytes of one account's voice clips on disk, not yet delivered...
    voice_spool_total: int = 1024 * MIB  # ...and of everyone's

    def override(self, name, text):
        """A copy with one limit changed; ValueError for an unknown name or a bad number."""
        changed = override(self, name, text, "limit")
        if name in FRAME_SIZES and getattr(changed, name) == 0:
            raise ValueError(f"{name} cannot be {text}")
        return changed


def raise_descriptor_limit():
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def total_connections(limits, descriptors):
    """The chat port's connection cap: the setting, else what the reserve leaves."""
    if limits.connections_total:
        return limits.connections_total
    reserve = max(DESCRIPTOR_RESERVE, int(descriptors * RESERVE_SHARE))
    return max(descriptors - reserve, descriptors // 2)


class ConnectionCounter:
    """Open connections per address and in total; ``admit`` counts one in or
    names the cap it would break."""

    def __init__(self, per_address, total):
        self.per_address = per_address
        self.total = total
        self.count = 0
        self._by_address = {}

    def admit(self, address):
        """None (and the connection is counted), or the refusal's reason."""
        if self.total and self.count >= self.total:
            audit.limit_tripped("connections_total", address)
            return "server full"
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            audit.limit_tripped("connections_per_address", address)
            return "too many connections from your address"
        self.count += 1
        self._by_address[address] = held + 1
        return None

    def release(self, address):
        self.count -= 1
        held = self._by_address.pop(address) - 1
        if held:
            self._by_address[address] = held


class Bucket:
    """A token bucket that may go into debt: what arrived is spent whatever
    the balance, and the next request waits until the debt is repaid."""

    def __init__(self, rate, burst, now):
        self.rate = rate
        self.burst = max(burst, 1)
        self.tokens = self.burst
        self.stamp = now

    def spend(self, amount, now):
        self._refill(now)
        self.tokens -= amount

    def wait(self, now):
        """Seconds until the balance is back at zero."""
        self._refill(now)
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def _refill(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Pacer:
    """One connection's message and byte rates.  The dialect asks ``ready()``
    before each request; when a bucket is in debt the answer is no and
    ``wake`` is called once it is repaid."""

    def __init__(self, limits, clock, address=None):
        now = clock.seconds()
        self.clock = clock
        self.address = address  # for the log of a limit tripped
        self.buckets = []  # (limit name, Bucket)
        self.messages = self._bucket("messages_per_second", limits.messages_per_second, limits.message_burst, now)
        self.bytes = self._bucket("bytes_per_second", limits.bytes_per_second, limits.byte_burst, now)
        self.wake = None
        self._timer = None

    def _bucket(self, name, rate, burst, now):
        if not rate:
            return None
        bucket = Bucket(rate, burst, now)
        self.buckets.append((name, bucket))
        return bucket

    def received(self, size):
        if self.bytes is not None:
            self.bytes.spend(size, self.clock.seconds())

    def took(self, item):
        """Count one decoded item; the raw bytes of a file or a clip are not requests."""
        if self.messages is not None and not isinstance(item, BODY_BYTES):
            self.messages.spend(1, self.clock.seconds())

    def ready(self):
        now = self.clock.seconds()
        wait = max((bucket.wait(now) for _, bucket in self.buckets), default=0.0)
        if wait and self._timer is None:
            self._timer = self.clock.callLater(wait, self._repaid)
            slowest = max(self.buckets, key=lambda pair: pair[1].wait(now))[0]
            audit.limit_tripped(slowest, self.address)
        return not wait

    def _repaid(self):
        self._timer = None
        if self.wake is not None:
            self.wake()

    def stop(self):
        """The connection is gone: its last requests run at once."""
        self.buckets = []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def set_frame_limits(decoder, limits, logged_in):
    """Frame limits for a dialect's decoder, before or after login."""
    if isinstance(decoder, JsonStreamDecoder):
        decoder.max_object = limits.json_object if logged_in else limits.frame_before_login
    elif isinstance(decoder, HeaderDecoder):
        decoder.body_limit = partial(header_body_limit, limits, logged_in)
        decoder.max_skip = limits.header_body  # a longer body is refused by closing
        decoder.max_line = HEADER_LINE if logged_in else min(HEADER_LINE, limits.frame_before_login)


def header_body_limit(limits, logged_in, headers):
    """Before login a body may have frame_before_login bytes; after it a voice
    clip header_body, other messages header_frame.  None for seed-002
    uploads: they are streamed to disk, and the file size limit bounds them."""
    if is_upload(headers):
        return None
    if not logged_in:
        return limits.frame_before_login
    return limits.header_body if is_voice(headers) else limits.header_frame


def error_frame(json_dialect, stat, reason):
    """A limit's error, as either dialect writes an error with no request."""
    if json_dialect:
        return encode({"message_type": "error", "content": "fail", "reason": reason})
    return encode_message({"message_type": "error", "stat": str(stat), "reason": reason})
