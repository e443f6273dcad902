"""Codec for the header dialect: ``key: value`` lines, a blank line, then an optional body.

A ``content-length: N`` header means exactly N raw bytes of body follow the blank line.
A message the decoder's ``streamed`` predicate picks (seed 002's file upload) has its body
handed on in chunks instead of held whole, and without ``content-length`` that body runs to
the end of the stream (``feed_eof``).  docs/protocol.md ("Header dialect: framing") has the
rules and error codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_KEY = re.compile(r"[a-z0-9_-]+")
_MAX_LENGTH_DIGITS = 18  # longer content-length values are rejected before int() sees them
BAD_LINE = "bad header line: send key: value lines; text with line breaks goes in a content-length body"


@dataclass(frozen=True)
class HeaderMessage:
    """A decoded message: its headers in arrival order (content-length removed) and its body."""

    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class HeaderError:
    """A malformed message; ``message_type`` is the broken message's own, if it could be read."""

    stat: int
    reason: str
    message_type: str | None = None
    ends_stream: bool = False  # its body is too long to skip: the decoder takes nothing more


@dataclass(frozen=True)
class BodyStart:
    """A streamed message's headers; its body follows as BodyChunks and one BodyEnd."""

    headers: dict[str, str]
    length: int | None  # None: the body runs to the end of the stream


@dataclass(frozen=True)
class BodyChunk:
    data: bytes


@dataclass(frozen=True)
class BodyEnd:
    complete: bool  # False: cut off before its length (or, unsized, the stream's end) came


def _never(headers: dict[str, str]) -> bool:
    return False


class HeaderDecoder:
    """Incremental decoder: feed it byte chunks, get back messages and errors in order.

    Memory stays bounded: the buffer holds at most one partial header line (max_line bytes)
    or one partial body (max_body bytes), and a message holds at most max_headers headers.
    """

    def __init__(
        self, max_line: int = 8192, max_headers: int = 64, max_body: int = 16 * 1024 * 1024,
        max_skip: int | None = None, body_limit: Callable[[dict[str, str]], int] | None = None,
        streamed: Callable[[dict[str, str]], bool] = _never, repeatable: frozenset = frozenset(),
    ):
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_body = max_body  # of a body held whole; a streamed one has no limit here
        self.body_limit = body_limit  # a message's headers -> its body limit or None (replaces max_body)
        self.max_skip = max_skip  # a rejected body longer than this ends the stream (None: skip any)
        self.ended = False
        self.streamed = streamed
        self.repeatable = repeatable  # keys that may come more than once: their values are joined by a space
        self._buffer = bytearray()
        self._headers: dict[str, str] = {}  # headers of the message being read
        self._lines = 0  # its header lines so far (a repeated key counts each time)
        self._error: tuple[int, str] | None = None  # its first error, reported at its blank line
        self._discarding_line = False  # inside an over-long line, dropping bytes up to "\n"
        self._body_left = 0  # body bytes still expected; while > 0 the decoder reads a body
        self._body_headers: dict[str, str] | None = None  # None: body of a rejected message
        self._streaming = False  # inside a streamed body
        self._stream_left: int | None = None  # its bytes still expected; None: up to the end

    def feed(self, data: bytes) -> list:
        """Decode as much of the bytes received so far as possible: HeaderMessage,
        HeaderError, and for a streamed message BodyStart, BodyChunk... BodyEnd."""
        self._buffer += data
        decoded: list = []
        pos = 0
        while not self.ended:
            if self._streaming:
                read = self._read_stream
            else:
                read = self._read_body if self._body_left else self._read_line
            next_pos = read(pos, decoded)
            if next_pos == pos:
                break
            pos = next_pos
        del self._buffer[:len(self._buffer) if self.ended else pos]
        return decoded

    @property
    def in_body(self) -> bool:
        """True while a body is being read (the sender owes bytes)."""
        return self._streaming or self._body_left > 0

    def feed_eof(self) -> list:
        """The stream ended: a header block without its blank line ends here, an
        unsized streamed body is complete, and a sized body still owed is not."""
        decoded: list = []
        if not self.in_body:
            line = bytes(self._buffer).removesuffix(b"\r")
            if line and not self._discarding_line:
                self._header_line(line)
            if self._headers or self._error:
                self._end_headers(decoded)
            self._discarding_line = False
            self._buffer.clear()
        if self._streaming:
            decoded.append(self._end_stream(self._stream_left is None))
        else:
            decoded.extend(self.cut())
        return decoded

    def cut(self) -> list:
        """Give up on the body being read (its sender went quiet): a BodyEnd or an
        error for it, and the bytes that follow are read as the next message."""
        if self._streaming:
            return [self._end_stream(False)]
        if not self._body_left:
            return []
        # A body held whole stays in the buffer until all of it came.
        headers, received, expected = self._body_headers, len(self._buffer), self._body_left
        self._body_left, self._body_headers = 0, None
        self._buffer.clear()
        if headers is None:
            return []  # a rejected message's body, already answered
        return [HeaderError(400, f"body incomplete: {received} of {expected} bytes came",
                            headers.get("message_type"))]

    def _read_line(self, pos: int, decoded: list) -> int:
        """Handle one header line starting at pos; return where the next line starts."""
        buffer = self._buffer
        end = buffer.find(b"\n", pos)
        if end < 0:
            # A partial line may hold max_line bytes plus the "\r" of a "\r\n" still to come.
            if len(buffer) - pos > self.max_line + 1:
                self._fail(431, "header line too long")
                self._discarding_line = True
            return len(buffer) if self._discarding_line else pos
        if self._discarding_line:
            self._discarding_line = False
            return end + 1
        line = bytes(buffer[pos:end]).removesuffix(b"\r")
        if line:
            self._header_line(line)
        elif self._headers or self._error:
            self._end_headers(decoded)
        # else: a blank line between messages, ignored.
        return end + 1

    def _header_line(self, line: bytes) -> None:
        raw_key, colon, raw_value = line.partition(b":")
        key = raw_key.strip(b" \t").lower().decode("latin-1")
        if len(line) > self.max_line:
            self._fail(431, "header line too long")
        elif not colon or not _KEY.fullmatch(key) or b"\r" in raw_value:
            self._fail(400, BAD_LINE)
        elif key in self._headers and key not in self.repeatable:
            self._fail(400, "duplicate header")
        elif self._lines >= self.max_headers:
            self._fail(431, "too many headers")
        else:
            self._lines += 1
            try:
                value = raw_value.strip(b" \t").decode("utf-8")
            except UnicodeDecodeError:
                self._fail(400, "invalid utf-8")
                return
            self._headers[key] = f"{self._headers[key]} {value}" if key in self._headers else value

    def _fail(self, stat: int, reason: str) -> None:
        if self._error is None:
            self._error = (stat, reason)

    def _end_headers(self, decoded: list) -> None:
        """The blank line ending a message: report it or its error, then expect its body."""
        headers, self._headers, self._lines = self._headers, {}, 0
        error, self._error = self._error, None
        streamed = error is None and self.streamed(headers)
        declared = headers.pop("content-length", None)
        length = _parse_length(declared) if declared is not None else None
        if declared is not None and length is None:
            # The body size is unknown, so whatever follows is read as the next message.
            error, length = error or (400, "bad content-length"), 0
        elif length is not None and (limit := self._limit(headers, streamed)) is not None and length > limit:
            error = error or (413, "body too large")
        if error:
            self.ended = self.max_skip is not None and (length or 0) > self.max_skip
            decoded.append(HeaderError(*error, headers.get("message_type"), self.ended))
            self._body_left, self._body_headers = length or 0, None
        elif streamed:
            self._start_stream(headers, length, decoded)
        elif length:
            self._body_left, self._body_headers = length, headers
        else:
            decoded.append(HeaderMessage(headers))

    def _limit(self, headers: dict[str, str], streamed: bool) -> int | None:
        """The body limit of a message: ``body_limit``'s answer (None: none), else
        max_body for a body held whole and none for a streamed one."""
        if self.body_limit is not None:
            return self.body_limit(headers)
        return None if streamed else self.max_body

    def _read_body(self, pos: int, decoded: list) -> int:
        """Take body bytes from pos; a rejected message's body is dropped as it arrives."""
        available = len(self._buffer) - pos
        if self._body_headers is None:
            taken = min(available, self._body_left)
        elif available >= self._body_left:
            taken = self._body_left
            decoded.append(HeaderMessage(self._body_headers, bytes(self._buffer[pos:pos + taken])))
        else:
            return pos
        self._body_left -= taken
        return pos + taken

    def _start_stream(self, headers: dict, length: int | None, decoded: list) -> None:
        decoded.append(BodyStart(headers, length))
        if length == 0:
            decoded.append(BodyEnd(True))
        else:
            self._streaming, self._stream_left = True, length

    def _read_stream(self, pos: int, decoded: list) -> int:
        """Hand on the streamed body's bytes from pos as they arrive."""
        available = len(self._buffer) - pos
        if not available:
            return pos
        taken = available if self._stream_left is None else min(available, self._stream_left)
        decoded.append(BodyChunk(bytes(self._buffer[pos:pos + taken])))
        if self._stream_left is not None:
            self._stream_left -= taken
            if not self._stream_left:
                decoded.append(self._end_stream(True))
        return pos + taken

    def _end_stream(self, complete: bool) -> BodyEnd:
        self._streaming, self._stream_left = False, None
        return BodyEnd(complete)


def _parse_length(text: str) -> int | None:
    """The content-length value as an int, or None unless it is 1 to 18 ASCII digits."""
    if text.isascii() and text.isdigit() and len(text) <= _MAX_LENGTH_DIGITS:
        return int(text)
    return None


def encode_message(headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """Encode one message; content-length is added for a non-empty body.

    Raises ValueError for a key outside [a-z0-9_-]+, an explicit content-length, or a value
    holding "\\n" or "\\r" (multi-line text belongs in the body).
    """
    return encode_head(headers, len(body)) + body


def encode_head(headers: Mapping[str, str], length: int) -> bytes:
    """A message's header lines and blank line, for a body of ``length`` bytes sent after them."""
    lines = []
    for key, value in headers.items():
        if not _KEY.fullmatch(key) or key == "content-length":
            raise ValueError(f"bad header key {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {key!r} has a line break in its value")
        lines.append(f"{key}: {value}\n")
    if length:
        lines.append(f"content-length: {length}\n")
    lines.append("\n")
    return "".join(lines).encode("utf-8")
