"""The voice spool: header-dialect voice clips on disk between sender and recipient.

A clip's bytes go to a file in the spool directory as they arrive, and go
out to the recipient read back from it (neochat/services/voice.py), so the
server holds no clip in memory.  Room is reserved for the whole declared
length before the first byte is read: per sender (``per_sender`` bytes of
its clips not delivered yet) and in total; 0 turns either bound off.  A
clip's file is deleted once it is delivered or dropped, and anything left
in the directory (a crash) is deleted at start.

Writes are plain buffered writes on the reactor thread, as for in-band
file transfers: no fsync, a clip is worth nothing after a restart.
"""

import os
import tempfile
from pathlib import Path

from neochat.chat.errors import ChatError


class SpoolFull(ChatError):
    stat = 503


class VoiceSpool:
    def __init__(self, directory, per_sender=0, total=0):
        self.directory = Path(directory)
        self.per_sender = per_sender
        self.total = total
        self.used = 0  # bytes reserved by clips not yet discarded
        self._by_sender = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.iterdir():
            leftover.unlink()

    def reserve(self, sender, length):
        """A new Clip of ``length`` bytes from ``sender``; SpoolFull when it would not fit."""
        held = self._by_sender.get(sender, 0)
        if self.per_sender and held + length > self.per_sender:
            raise SpoolFull("too many of your voice clips waiting for delivery")
        if self.total and self.used + length > self.total:
            raise SpoolFull("voice spool full")
        clip = Clip(self, sender, length)
        self._by_sender[sender] = held + length
        self.used += length
        return clip

    def release(self, clip):
        self.used -= clip.size
        held = self._by_sender.pop(clip.sender) - clip.size
        if held:
            self._by_sender[clip.sender] = held


class Clip:
    """One clip's file: ``write`` its bytes, ``close``, then ``open`` it to
    read it back; ``discard`` (more than once is harmless) deletes it."""

    def __init__(self, spool, sender, size):
        self.spool = spool
        self.sender = sender
        self.size = size
        descriptor, path = tempfile.mkstemp(dir=spool.directory, suffix=".clip")
        self.path = Path(path)
        self._file = os.fdopen(descriptor, "wb")
        self._discarded = False

    def write(self, data):
        self._file.write(data)

    def close(self):
        self._file.close()

    def open(self):
        return open(self.path, "rb")

    def contents(self):
        """All its bytes (a small clip, sent on to another node)."""
        return self.path.read_bytes()

    def discard(self):
        if self._discarded:
            return
        self._discarded = True
        self._file.close()
        self.path.unlink(missing_ok=True)
        self.spool.release(self)
