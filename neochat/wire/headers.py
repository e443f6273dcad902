"""Codec for the header dialect: ``key: value`` lines, a blank line, then an optional body.

A ``content-length: N`` header means exactly N raw bytes of body follow the blank line.
The framing rules and error codes are in docs/protocol-headers-framing.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_KEY = re.compile(r"[a-z0-9_-]+")
_MAX_LENGTH_DIGITS = 18  # longer content-length values are rejected before int() sees them


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


class HeaderDecoder:
    """Incremental decoder: feed it byte chunks, get back messages and errors in order.

    Memory stays bounded: the buffer holds at most one partial header line (max_line bytes)
    or one partial body (max_body bytes), and a message holds at most max_headers headers.
    """

    def __init__(
        self, max_line: int = 8192, max_headers: int = 64, max_body: int = 16 * 1024 * 1024,
        max_skip: int | None = None, body_limit: Callable[[dict[str, str]], int] | None = None,
    ):
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_body = max_body
        self.max_skip = max_skip  # a rejected body longer than this ends the stream (None: skip any)
        self.ended = False
        self.body_limit = body_limit  # a message's headers -> its body limit (None: max_body for all)
        self._buffer = bytearray()
        self._headers: dict[str, str] = {}  # headers of the message being read
        self._error: tuple[int, str] | None = None  # its first error, reported at its blank line
        self._discarding_line = False  # inside an over-long line, dropping bytes up to "\n"
        self._body_left = 0  # body bytes still expected; while > 0 the decoder reads a body
        self._body_headers: dict[str, str] | None = None  # None: body of a rejected message

    def feed(self, data: bytes) -> list[HeaderMessage | HeaderError]:
        """Decode as much of the bytes received so far as possible."""
        self._buffer += data
        decoded: list[HeaderMessage | HeaderError] = []
        pos = 0
        while not self.ended:
            read = self._read_body if self._body_left else self._read_line
            next_pos = read(pos, decoded)
            if next_pos == pos:
                break
            pos = next_pos
        del self._buffer[:len(self._buffer) if self.ended else pos]
        return decoded

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
        key = raw_key.lower().decode("latin-1")
        if len(line) > self.max_line:
            self._fail(431, "header line too long")
        elif not colon or not _KEY.fullmatch(key) or b"\r" in raw_value:
            self._fail(400, "bad header line")
        elif key in self._headers:
            self._fail(400, "duplicate header")
        elif len(self._headers) >= self.max_headers:
            self._fail(431, "too many headers")
        else:
            try:
                self._headers[key] = raw_value.strip(b" \t").decode("utf-8")
            except UnicodeDecodeError:
                self._fail(400, "invalid utf-8")

    def _fail(self, stat: int, reason: str) -> None:
        if self._error is None:
            self._error = (stat, reason)

    def _end_headers(self, decoded: list) -> None:
        """The blank line ending a message: report it or its error, then expect its body."""
        headers, self._headers = self._headers, {}
        error, self._error = self._error, None
        length = _parse_length(headers.pop("content-length", "0"))
        if length is None:
            # The body size is unknown, so whatever follows is read as the next message.
            error, length = error or (400, "bad content-length"), 0
        elif length > (self.max_body if self.body_limit is None else self.body_limit(headers)):
            error = error or (413, "body too large")
        if error:
            self.ended = self.max_skip is not None and length > self.max_skip
            decoded.append(HeaderError(*error, headers.get("message_type"), self.ended))
            self._body_left, self._body_headers = length, None
        elif length:
            self._body_left, self._body_headers = length, headers
        else:
            decoded.append(HeaderMessage(headers))

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
    lines = []
    for key, value in headers.items():
        if not _KEY.fullmatch(key) or key == "content-length":
            raise ValueError(f"bad header key {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {key!r} has a line break in its value")
        lines.append(f"{key}: {value}\n")
    if body:
        lines.append(f"content-length: {len(body)}\n")
    lines.append("\n")
    return "".join(lines).encode("utf-8") + body
