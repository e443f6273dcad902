"""Framing of the JSON dialect (seed 000): a stream of JSON objects.

Clients may end each object with a newline or send objects back to back
(a bare ``json.dumps`` per ``send``); TCP may split or merge either.  The
decoder validates each value incrementally as its bytes arrive
(``json_prefix.py``: one pass, a stack of open containers), so it knows where
an object ends, exactly where raw file bytes that follow it begin (see
``expect_raw``), and the moment a value can no longer become valid JSON.

Resynchronising after bad input (docs/protocol.md, "JSON dialect: framing"):

- A value that can no longer become valid is answered at once with a
  ``Malformed``; the rest of it is skipped up to the bracket that closes it,
  or to the next line that starts with ``{``, whichever comes first (an
  error outside any bracket is skipped to the end of its line, or to the
  next ``{``).  Strings never span lines.
- A pending value whose next line starts with ``{`` is abandoned there as
  malformed, and that line starts a new object: an unterminated object
  cannot swallow the requests after it.  Only an array element inside an
  object may start a line with ``{`` (as pretty-printers put it).
- Objects nested deeper than ``MAX_DEPTH`` or longer than ``max_object``
  bytes are answered as soon as that is known, then skipped to their end.

``next_item()`` returns one item at a time so that the caller can switch the
decoder to raw mode between an object and the bytes after it.
"""

import json
import re
from dataclasses import dataclass

import orjson

from neochat.wire.json_prefix import (
    BACKSLASH, NEWLINE, OPEN_ARRAY, OPEN_OBJECT, QUOTE, WHITESPACE, Abandoned, Complete, JsonPrefix,
)

MAX_OBJECT = 64 * 1024  # bytes of one JSON object
MAX_DEPTH = 64  # objects and arrays nested in one another

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark is skipped between objects
MALFORMED = "malformed JSON"

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# The fast path: where a plain object may end, and what it leaves to the validator.
_OBJECT_END = re.compile(rb"\}(?=[{\s]|\Z)")
_LINE_STARTS_OBJECT = re.compile(rb"\n[ \t\r]*\{")

# Skipping the rest of a bad value: what matters outside and inside strings.
_BLANK = re.compile(rb"[ \t\r]*")
_SKIP_OUTSIDE = re.compile(rb'[{}\[\]"\n]')
_SKIP_INSIDE = re.compile(rb'["\\\n]')


@dataclass(frozen=True)
class Malformed:
    """Input that is not a usable JSON object; ``reason`` goes into the error
    reply, under ``message_type`` when the object named one.  ``stat`` 413:
    the object was longer than ``max_object``."""

    reason: str
    message_type: str = None
    stat: int = 400


@dataclass(frozen=True)
class RawChunk:
    """Bytes of a raw payload requested with ``expect_raw``; ``last`` marks its end."""

    data: bytes
    last: bool


class JsonStreamDecoder:
    def __init__(self, max_object=MAX_OBJECT, max_depth=MAX_DEPTH):
        self.max_object = max_object
        self.max_depth = max_depth
        self._buffer = bytearray()  # the pending value starts at 0
        self._prefix = JsonPrefix(max_depth)
        self._skipping = False
        self._skip_depth = 0
        self._skip_in_string = False
        self._skip_line_start = False
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
        if self._skipping and not self._skip():
            return None
        if self._prefix.scan == 0:
            if not self._skip_blank():
                return None
            value = self._fast_object()
            if value is not None:
                return value
        return self._validate()

    def cut_short(self):
        """The stream has ended: a Malformed for a value it cut short (once),
        or None when nothing but blanks is left."""
        if self._raw_left or self._skipping or not self._skip_blank():
            return None  # a raw payload's end is the dialect's; a skipped value was answered
        self._buffer.clear()
        self._prefix.reset()
        return Malformed(TRUNCATED)

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

    # -- between values --------------------------------------------------

    def _skip_blank(self):
        """Drop white space and byte order marks; True if a value starts."""
        buffer = self._buffer
        while True:
            blank = WHITESPACE.match(buffer).end()
            if buffer.find(b"\n", 0, blank) >= 0:
                self.newline_terminated = True
            del buffer[:blank]
            if not buffer.startswith(BOM):
                break
            del buffer[: len(BOM)]
        return bool(buffer) and not (len(buffer) < len(BOM) and BOM.startswith(buffer))

    # -- validating a value ----------------------------------------------

    def _fast_object(self):
        """Fast path: a plain object up to the first ``}`` that white space,
        a ``{`` or the end of the bytes so far follows, as most requests are,
        parsed by orjson (which refuses NaN and Infinity, as JSON does);
        cheap tests first, the regular expressions only where they may
        match.  None sends the value to ``_validate`` (which decides the
        same for any object this accepts).  Tried once per value
        (``_validate`` moves on), so no byte is searched twice."""
        buffer = self._buffer
        end = _OBJECT_END.search(buffer, 0, self.max_object) if buffer[:1] == b"{" else None
        if end is None:
            return None
        text = bytes(buffer[: end.end()])
        if (text.count(b"{") + text.count(b"[") > self.max_depth
                or b"\\u" in text and _SURROGATE_ESCAPE.search(text)
                or b"\n" in text and _LINE_STARTS_OBJECT.search(text)):
            return None
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:  # invalid UTF-8 too
            return None
        if not isinstance(value, dict) or _has_float(value):
            return None
        del buffer[: len(text)]
        return value

    def _validate(self):
        result = self._prefix.advance(self._buffer)
        if result is None:
            return self._need_more()
        if isinstance(result, Complete):
            return self._finish(result.end)
        if isinstance(result, Abandoned):
            del self._buffer[: result.position]
            self._prefix.reset()
            return Malformed(MALFORMED)
        return self._start_skipping(result.position, result.reason, result.depth, result.in_string)

    def _need_more(self):
        if len(self._buffer) <= self.max_object:
            return None
        # Too long: say so now, and skip the rest of it.
        prefix = self._prefix
        return self._start_skipping(prefix.scan, self._too_long(), prefix.depth, prefix.in_string, stat=413)

    def _too_long(self):
        return f"message too long (limit {self.max_object} bytes)"

    def _finish(self, end):
        text = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._prefix.reset()
        if end > self.max_object:
            return Malformed(self._too_long(), stat=413)
        if text[:1] != b"{":
            return Malformed("not a JSON object: send each request as one {...} object")
        try:
            value = json.loads(text.decode("utf-8"))
        except UnicodeDecodeError:
            named = json.loads(text.decode("utf-8", "replace")).get("message_type")
            return _malformed("not UTF-8: send text as UTF-8", named)
        if _SURROGATE_ESCAPE.search(text):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                reason = "lone surrogate in a string: escape characters outside the BMP as a \\ud83d\\ude00 pair"
                return _malformed(reason, value.get("message_type"))
        return value

    # -- after an error --------------------------------------------------

    def _start_skipping(self, position, reason, depth, in_string, stat=400):
        """Answer now; skip the rest of the value from ``position`` on."""
        self._skipping = True
        self._skip_depth = depth
        self._skip_in_string = in_string
        self._skip_line_start = False
        del self._buffer[:position]
        self._prefix.reset()
        return Malformed(reason, stat=stat)

    def _skip(self):
        """Drop the rest of a bad value; True once the next value may start."""
        buffer, position, end = self._buffer, 0, len(self._buffer)
        while position < end:
            if self._skip_line_start:
                position = _BLANK.match(buffer, position).end()
                if position == end:
                    break
                if buffer[position] == OPEN_OBJECT:
                    return self._stop_skipping(position)
                self._skip_line_start = False
            pattern = _SKIP_INSIDE if self._skip_in_string else _SKIP_OUTSIDE
            match = pattern.search(buffer, position)
            if match is None:
                position = end
                break
            position = match.start()
            byte = buffer[position]
            if byte == NEWLINE:
                self._skip_in_string = False
                position += 1
                if self._skip_depth == 0:
                    return self._stop_skipping(position)
                self._skip_line_start = True
            elif byte == QUOTE:
                self._skip_in_string = not self._skip_in_string
                position += 1
            elif byte == BACKSLASH:
                if position + 1 == end:
                    break
                position += 1 if buffer[position + 1] == NEWLINE else 2
            elif byte in (OPEN_OBJECT, OPEN_ARRAY):
                if self._skip_depth == 0 and byte == OPEN_OBJECT:
                    return self._stop_skipping(position)
                self._skip_depth += 1
                position += 1
            else:
                position += 1
                if self._skip_depth:
                    self._skip_depth -= 1
                    if self._skip_depth == 0:
                        return self._stop_skipping(position)
        del buffer[:position]
        return False

    def _stop_skipping(self, position):
        del self._buffer[:position]
        self._skipping = False
        return True


TRUNCATED = "truncated: the stream ended inside a JSON object"


def _has_float(container):
    """orjson reads an integer outside 64 bits as a float (json as the exact
    integer), so values with a float in them go the slow way: few do."""
    for value in container.values() if isinstance(container, dict) else container:
        kind = type(value)
        if kind is float or (kind is dict or kind is list) and _has_float(value):
            return True
    return False


def _malformed(reason, message_type):
    return Malformed(reason, message_type if isinstance(message_type, str) else None)


# orjson hands dataclasses, datetimes and subclasses of built-in types to
# ``default`` (json would serialise a NamedTuple as a list, for one); what it
# refuses (a key that is not a string, a NamedTuple) goes to json.
_ORJSON_OPTIONS = (orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


def encode(obj, default=None):
    """One object per line, compact, UTF-8, as the server always sends."""
    try:
        return orjson.dumps(obj, default=default, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default)
        return text.encode("utf-8") + b"\n"
