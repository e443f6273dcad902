"""The four fuzz targets, shared by the atheris harness (``run.py``) and the
hypothesis properties (``test_properties.py``).

Each takes arbitrary bytes and asserts what must hold for any input: no
exception but the documented ones, state bounded by the configured limits,
and the same result however TCP splits the stream.  The first byte of the
input picks the chunk size the stream is fed in.
"""

import unicodedata

from twisted.internet.task import Clock

from neochat.chat.calls import CallError, CallLimits, CallRegistry
from neochat.chat.files import (
    DROPPED_CATEGORIES, MAX_ORIGINAL_BYTES, MAX_ORIGINAL_CHARS, is_stored_name, sanitise, stored_name,
)
from neochat.services.relay import CellPortProtocol, MediaRelay, parse_fields
from neochat.wire.headers import HeaderDecoder, HeaderError, HeaderMessage, encode_message
from neochat.wire.json_stream import JsonStreamDecoder, Malformed, RawChunk

MAX_OBJECT = 512  # small limits so that the fuzzer reaches them
MAX_LINE, MAX_HEADERS, MAX_BODY, MAX_SKIP = 128, 8, 1024, 4096
MAX_RAW = 2048  # largest raw payload a fuzzed ``file_length`` asks for


def chunks(data):
    """The stream after its first byte, in pieces of 1 to 256 bytes."""
    if not data:
        return []
    size = data[0] + 1
    return [data[i:i + size] for i in range(1, len(data), size)]


# -- the JSON stream decoder (neochat/wire/json_stream.py) ----------------------

def decode_json_stream(pieces):
    """Items in order, adjacent raw chunks joined; a ``file_length`` field in
    an object switches the decoder to raw bytes, as the JSON dialect does."""
    decoder = JsonStreamDecoder(max_object=MAX_OBJECT)
    items = []
    for piece in pieces:
        decoder.feed(piece)
        for _ in range(len(piece) + 2):  # each item consumes at least one byte
            item = decoder.next_item()
            if item is None:
                break
            if isinstance(item, RawChunk) and items and isinstance(items[-1], RawChunk):
                items[-1] = RawChunk(items[-1].data + item.data, item.last)
            else:
                items.append(item)
            if isinstance(item, dict) and type(item.get("file_length")) is int:
                decoder.expect_raw(min(max(item["file_length"], 0), MAX_RAW))
        else:
            raise AssertionError("the decoder kept returning items without consuming bytes")
        assert decoder.buffered() <= MAX_OBJECT + len(piece) + 2, "the buffer outgrew the object limit"
    return items


def json_stream(data):
    items = decode_json_stream(chunks(data))
    for item in items:
        assert isinstance(item, (dict, Malformed, RawChunk)), item
    assert items == decode_json_stream([data[1:]]), "the items depend on how the stream was split"


# -- the header parser (neochat/wire/headers.py) ---------------------------------

def decode_headers(pieces):
    decoder = HeaderDecoder(max_line=MAX_LINE, max_headers=MAX_HEADERS, max_body=MAX_BODY, max_skip=MAX_SKIP,
                            body_limit=lambda headers: MAX_BODY if "voice" in headers.values() else MAX_BODY // 4)
    items = []
    for piece in pieces:
        items += decoder.feed(piece)
        assert len(decoder._buffer) <= max(MAX_LINE + 2, MAX_BODY) + len(piece), "the buffer outgrew the limits"
    return items


def headers(data):
    items = decode_headers(chunks(data))
    for position, item in enumerate(items, 1):
        assert isinstance(item, (HeaderMessage, HeaderError)), item
        assert not (isinstance(item, HeaderError) and item.ends_stream) or position == len(items)
        if isinstance(item, HeaderMessage):
            assert len(item.headers) <= MAX_HEADERS and len(item.body) <= MAX_BODY
            assert "content-length" not in item.headers
            if item.headers:  # (a lone "content-length: 0" is an empty message, with no encoding)
                # what was decoded encodes back to the same message; encoding may
                # add the space after a colon, so the line limit is one byte more
                again = HeaderDecoder(max_line=MAX_LINE + 1, max_headers=MAX_HEADERS, max_body=MAX_BODY)
                assert again.feed(encode_message(item.headers, item.body)) == [item]
    assert items == decode_headers([data[1:]]), "the messages depend on how the stream was split"


# -- the cell datagram parser (neochat/services/relay.py) ------------------------

class Datagrams:
    """A UDP transport that keeps what is written."""

    def __init__(self):
        self.sent = []

    def write(self, data, address):
        self.sent.append((data, address))


def cell(data):
    """One datagram on the keyed cell port, from a stranger; then the same
    bytes through the key-request parser alone."""
    clock = Clock()
    limits = CallLimits(max_calls_total=4)
    registry = CallRegistry(limits, clock)
    protocol = CellPortProtocol(registry, MediaRelay(clock))
    protocol.transport = Datagrams()
    for source_port in range(3):  # the same stranger, again and again
        protocol.datagramReceived(data, ("192.0.2.1", 5000 + source_port))
    assert len(registry) <= limits.max_calls_total
    for reply, address in protocol.transport.sent:
        assert address[0] == "192.0.2.1" and len(reply) < 512 and reply.endswith(b"\n\n")
    try:
        fields = parse_fields(data)
    except CallError as error:
        assert error.reason == "bad_request"
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


# -- the file-name sanitiser (neochat/chat/files.py) -------------------------------

def file_name(data):
    original = data.decode("utf-8", errors="surrogateescape")  # bad bytes become lone surrogates
    name = sanitise(original)
    check_safe_name(name)
    # Not asserted: sanitise(name) == name.  A cut name may end in what now
    # looks like an extension, and a second pass treats it so.
    assert is_stored_name(stored_name("fuzz", 1, original))


def check_safe_name(name):
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name
    assert not any(c in '<>:"|?*' for c in name)
    assert name == name.strip(" .")
    assert len(name) <= MAX_ORIGINAL_CHARS and len(name.encode()) <= MAX_ORIGINAL_BYTES
    assert not any(unicodedata.category(c) in DROPPED_CATEGORIES for c in name)


TARGETS = {"json_stream": json_stream, "headers": headers, "cell": cell, "file_name": file_name}
