"""Framing of the JSON dialect (seed 000): a stream of JSON objects.

Clients may end each object with a newline or send objects back to back
(a bare ``json.dumps`` per ``send``); TCP may split or merge either.  The
decoder finds object boundaries by matching braces outside strings, on
bytes, so it also knows exactly where raw file bytes that follow an object
begin (see ``expect_raw``).

``next_item()`` returns one item at a time so that the caller can switch the
decoder to raw mode between an object and the bytes after it.
"""

import json
import re
from dataclasses import dataclass

MAX_OBJECT = 64 * 1024  # bytes of one JSON object

_OUTSIDE_STRING = re.compile(rb'[{}"]')
_INSIDE_STRING = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class Malformed:
    """Input that is not a JSON object; ``reason`` goes into the error reply."""

    reason: str


@dataclass(frozen=True)
class RawChunk:
    """Bytes of a raw payload requested with ``expect_raw``; ``last`` marks its end."""

    data: bytes
    last: bool


class JsonStreamDecoder:
    def __init__(self, max_object=MAX_OBJECT):
        self.max_object = max_object
        self._buffer = bytearray()
        self._scan = 0  # how far the current object has been scanned
        self._depth = 0
        self._in_string = False
        self._oversized = False  # current object is being skipped
        self._junk = False  # skipping a non-object line up to its newline
        self._raw_left = 0
        self._raw_skip_newline = False
        self.newline_terminated = False  # learned from the first objects

    def feed(self, data):
        self._buffer += data

    def expect_raw(self, length):
        """The next ``length`` bytes are a raw payload, not JSON.

        They start right after the closing brace, except that on a
        connection whose messages end with newlines one newline (``\\n`` or
        ``\\r\\n``) there is taken as the terminator of the object.
        """
        self._raw_left = length
        self._raw_skip_newline = self.newline_terminated

    def buffered(self):
        return len(self._buffer)

    def next_item(self):
        """A dict, a Malformed, a RawChunk, or None when more bytes are needed."""
        if self._raw_left:
            return self._next_raw()
        if self._depth == 0 and not self._junk and not self._skip_to_object():
            return None
        return self._skip_junk() if self._junk else self._scan_object()

    # -- raw payloads ----------------------------------------------------

    def _next_raw(self):
        if self._raw_skip_newline:
            if self._buffer[:1] == b"\r":
                if len(self._buffer) < 2:
                    return None
                if self._buffer[1:2] == b"\n":
                    del self._buffer[:2]
            elif self._buffer[:1] == b"\n":
                del self._buffer[:1]
            elif not self._buffer:
                return None
            self._raw_skip_newline = False
        if not self._buffer:
            return None
        take = min(self._raw_left, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        self._raw_left -= take
        return RawChunk(data, last=self._raw_left == 0)

    # -- objects ---------------------------------------------------------

    def _skip_to_object(self):
        """Drop whitespace between objects; True if an object or junk starts."""
        start = 0
        while start < len(self._buffer) and self._buffer[start] in _WHITESPACE:
            if self._buffer[start] == 0x0A:
                self.newline_terminated = True
            start += 1
        del self._buffer[:start]
        if not self._buffer:
            return False
        if self._buffer[0] != 0x7B:  # "{"
            self._junk = True
        self._scan = 0
        return True

    def _skip_junk(self):
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self.max_object:
                self._buffer.clear()  # keep skipping; report once the line ends
            return None
        line = bytes(self._buffer[:end]).strip()
        del self._buffer[: end + 1]
        self._junk = False
        self.newline_terminated = True
        try:
            json.loads(line)
        except ValueError:
            return Malformed("malformed JSON")
        return Malformed("not a JSON object")

    def _scan_object(self):
        buffer = self._buffer
        position = self._scan
        while True:
            pattern = _INSIDE_STRING if self._in_string else _OUTSIDE_STRING
            match = pattern.search(buffer, position)
            if match is None:
                return self._need_more(len(buffer))
            position = match.end()
            token = match.group()
            if self._in_string:
                if token == b"\\":
                    if position >= len(buffer):
                        return self._need_more(position - 1)
                    position += 1  # the escaped character
                else:
                    self._in_string = False
            elif token == b'"':
                self._in_string = True
            elif token == b"{":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return self._finish_object(position)

    def _need_more(self, scanned):
        self._scan = scanned
        if len(self._buffer) > self.max_object:
            # Too long: forget its bytes but keep matching braces to its end.
            self._oversized = True
            del self._buffer[:scanned]
            self._scan = 0
        return None

    def _finish_object(self, end):
        text = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._scan = 0
        if self._oversized:
            self._oversized = False
            return Malformed(f"message too long (limit {self.max_object} bytes)")
        if len(text) > self.max_object:
            return Malformed(f"message too long (limit {self.max_object} bytes)")
        try:
            value = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return Malformed("malformed JSON")
        return value


def encode(obj, default=None):
    """One object per line, UTF-8, as the server always sends."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default)
    return text.encode("utf-8") + b"\n"
