"""An incremental JSON validator: it reads one value's bytes as they arrive,
in one pass over them (a tokenizer with a stack of open containers), and
tells as soon as the value is complete or can no longer become valid JSON.
The JSON stream decoder (``json_stream.py``) frames and resynchronises with it.
"""

import re
from dataclasses import dataclass

MAX_NUMBER = 100  # characters of one number

WHITESPACE = re.compile(rb"[ \t\r\n]*")
_STRING_BODY = re.compile(rb'[^"\\\x00-\x1f]*')
_HEX = re.compile(rb"[0-9a-fA-F]{0,4}")
_NUMBER_RUN = re.compile(rb"[-+.eE0-9]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LETTERS = re.compile(rb"[a-zA-Z]*")
_LITERALS = (b"true", b"false", b"null")
_ESCAPES = frozenset(b'"\\/bfnrt')

OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY = b"{}[]"
QUOTE, BACKSLASH, NEWLINE = ord('"'), ord("\\"), ord("\n")
CLOSER = {OPEN_OBJECT: CLOSE_OBJECT, OPEN_ARRAY: CLOSE_ARRAY}

# What is due next in the pending value.
VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, AFTER_VALUE = range(6)


@dataclass(frozen=True)
class Complete:
    end: int  # the value is the bytes before this offset


@dataclass(frozen=True)
class Broken:
    """The value cannot become valid from the byte at ``position`` on.
    ``depth`` containers and perhaps a string (``in_string``) are open there."""

    position: int
    reason: str
    depth: int
    in_string: bool


@dataclass(frozen=True)
class Abandoned:
    """A line starting with ``{`` came at ``position`` while the value was
    pending: the value was never finished, and that line is a new object."""

    position: int


class JsonPrefix:
    """The state of one pending value whose bytes start at offset 0 of the
    buffer passed to ``advance``."""

    def __init__(self, max_depth):
        self.max_depth = max_depth
        self.reset()

    def reset(self):
        self.scan = 0  # how far the value has been validated
        self._stack = bytearray()  # its open objects and arrays
        self._expect = VALUE
        self.in_string = False
        self._key = False  # the open string is an object key
        self._line_start = False  # a newline came after the last token

    @property
    def depth(self):
        return len(self._stack)

    def advance(self, buffer):
        """Validate from where the last call stopped: a Complete, Broken or
        Abandoned, or None while the value may still go on."""
        position, end = self.scan, len(buffer)
        while position < end:
            if self.in_string:
                position = _STRING_BODY.match(buffer, position).end()
                if position == end:
                    break
                byte = buffer[position]
                if byte == QUOTE:
                    self.in_string = False
                    position += 1
                    if self._key:
                        self._expect = COLON
                    elif self._value_done():
                        return Complete(position)
                elif byte != BACKSLASH:
                    return self._broken(buffer, position)  # a control character
                elif position + 1 == end:
                    break
                elif buffer[position + 1] == ord("u"):
                    digits = _HEX.match(buffer, position + 2).end()
                    if digits < position + 6:
                        if digits == end:
                            break
                        return self._broken(buffer, digits)
                    position = digits
                elif buffer[position + 1] in _ESCAPES:
                    position += 2
                else:
                    return self._broken(buffer, position + 1)
                continue
            blank = WHITESPACE.match(buffer, position).end()
            if buffer.find(b"\n", position, blank) >= 0:
                self._line_start = True
            position = blank
            if position == end:
                break
            byte = buffer[position]
            if byte == OPEN_OBJECT and self._line_start and not self._array_element():
                return Abandoned(position)
            self._line_start = False
            expect = self._expect
            if expect == COLON:
                if byte != ord(":"):
                    return self._broken(buffer, position)
                self._expect = VALUE
                position += 1
            elif expect == AFTER_VALUE:
                top = self._stack[-1]
                if byte == ord(","):
                    self._expect = KEY if top == OPEN_OBJECT else VALUE
                    position += 1
                elif byte == CLOSER[top]:
                    position += 1
                    if self._close():
                        return Complete(position)
                else:
                    return self._broken(buffer, position)
            elif expect in (KEY, KEY_OR_CLOSE):
                if byte == QUOTE:
                    self.in_string, self._key = True, True
                    position += 1
                elif byte == CLOSE_OBJECT and expect == KEY_OR_CLOSE:
                    position += 1
                    if self._close():
                        return Complete(position)
                else:
                    return self._broken(buffer, position)
            elif byte == CLOSE_ARRAY and expect == VALUE_OR_CLOSE:
                position += 1
                if self._close():
                    return Complete(position)
            elif byte in (OPEN_OBJECT, OPEN_ARRAY):
                if len(self._stack) >= self.max_depth:
                    return self._broken(buffer, position, f"nesting too deep (limit {self.max_depth})")
                self._stack.append(byte)
                self._expect = KEY_OR_CLOSE if byte == OPEN_OBJECT else VALUE_OR_CLOSE
                position += 1
            elif byte == QUOTE:
                self.in_string, self._key = True, False
                position += 1
            else:
                scalar_end = _scalar_end(buffer, position)
                if scalar_end is None:
                    break  # it may go on in the next bytes
                if scalar_end < 0:
                    return self._broken(buffer, position)
                position = scalar_end
                if self._value_done():
                    return Complete(position)
        self.scan = position
        return None

    def _broken(self, buffer, position, reason="malformed JSON"):
        in_string = self.in_string and buffer[position] != NEWLINE  # strings end at a newline
        return Broken(position, reason, len(self._stack), in_string)

    def _array_element(self):
        """A value is due inside an array inside an object."""
        stack = self._stack
        return stack[:1] == b"{" and stack[-1:] == b"[" and self._expect in (VALUE, VALUE_OR_CLOSE)

    def _close(self):
        self._stack.pop()
        return self._value_done()

    def _value_done(self):
        """True when that completed the top-level value."""
        if not self._stack:
            return True
        self._expect = AFTER_VALUE
        return False


def _scalar_end(buffer, start):
    """Where the number or literal at ``start`` ends; None if that is not
    known yet, -1 if it is not one."""
    if buffer[start] in b"-0123456789":
        end = _NUMBER_RUN.match(buffer, start).end()
        if end - start > MAX_NUMBER:
            return -1
        if end == len(buffer):
            return None
        return end if _NUMBER.fullmatch(buffer, start, end) else -1
    end = _LETTERS.match(buffer, start).end()
    word = bytes(buffer[start:end])
    if end == len(buffer) and word and any(literal.startswith(word) for literal in _LITERALS):
        return None
    return end if word in _LITERALS else -1
