"""The file library: naming, streaming uploads, read rights and retention.

Files live flat under one directory by their stored name,
``<quote(account)>_<ms>_<sanitised original name>``.  An upload streams into
``.partial/`` and is linked into place only once complete, so no half-written
file is ever visible; the database row, committed right after, is what makes
it exist for readers.  Removal goes the other way round (file, then row) so
that a crash in between leaves a row the next purge removes again.

Threads: methods returning Deferreds run on the reactor (the FTP thread calls
them through ``blockingCallFromThread``).  ``Upload.write`` and ``abort`` run
on whichever thread feeds the upload: the FTP thread, or the reactor for
in-band transfers, where a chunk is one buffered ``write`` (no fsync), quick
enough to do inline.  The fsync at the end runs in the reactor's thread pool.
"""

import errno
import hashlib
import os
import re
import tempfile
import threading
import unicodedata
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from twisted.internet import defer, threads
from twisted.logger import Logger

from neochat.chat import audit
from neochat.chat.model import now_ms

log = Logger()

MAX_NAME_BYTES = 255  # one path component on common filesystems
MAX_OWNER_CHARS = 120  # of the quoted account
MAX_ORIGINAL_CHARS = 100
# What is left of MAX_NAME_BYTES after "<owner>_<14-digit ms>_".
MAX_ORIGINAL_BYTES = MAX_NAME_BYTES - (MAX_OWNER_CHARS + 1 + 14 + 1)
MAX_EXTENSION_CHARS = 16  # kept when a long name is shortened
PARTIAL_DIR = ".partial"
DAY_MS = 24 * 3600 * 1000
PURGE_BATCH = 500
# The first bytes of an upload are hashed by the thread receiving them (handing
# a small file to another thread costs more than hashing it); the rest go to the
# library's hashing thread, so that receiving and hashing a large file overlap.
INLINE_HASH_BYTES = 1024 * 1024
MAX_HASH_BACKLOG = 4 * 1024 * 1024  # bytes of one upload waiting to be hashed

DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # control, format, surrogate, separators
# '<' and '>' would break <file> references; the rest trips Windows clients.
UNSAFE_CHARACTERS = re.compile(r'[<>:"|?*]')
STORED_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]+_[0-9]+_[^/\\\x00-\x1f\x7f]+")
FILE_REFERENCE = re.compile(r"<file>\s*([^<>]*?)\s*</file>")


class UploadRefused(OSError):
    """The upload breaks a limit (FTP: 552).  An OSError with an errno so
    that code writing files treats it as a failed write."""

    def __str__(self):
        return self.strerror


class FileTooLarge(UploadRefused):
    limit = "max_file_size"  # its name in the metrics and logs (audit.limit_tripped)

    def __init__(self, limit):
        super().__init__(errno.EFBIG, f"file larger than the {limit}-byte limit")


class QuotaExceeded(UploadRefused):
    limit = "user_quota"

    def __init__(self, quota):
        super().__init__(errno.EDQUOT, f"files would exceed the {quota}-byte quota")


@dataclass(frozen=True)
class FileLimits:
    max_file_size: int = 256 * 1024 * 1024  # bytes; 0: no limit
    user_quota: int = 1024 * 1024 * 1024  # bytes an account may own; 0: no quota
    retention_days: float = 0  # files older than this are purged; 0: kept forever


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str


# -- names ---------------------------------------------------------------

def sanitise(original):
    """The client's file name made safe to embed: its last path component,
    without control characters, at most MAX_ORIGINAL_CHARS characters and
    MAX_ORIGINAL_BYTES bytes (keeping a short extension), or "file"."""
    name = re.split(r"[/\\]", original or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in DROPPED_CATEGORIES)
    name = UNSAFE_CHARACTERS.sub("_", name).strip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    else:
        extension = "." + extension
    stem = stem[:MAX_ORIGINAL_CHARS - len(extension)]
    while len((stem + extension).encode()) > MAX_ORIGINAL_BYTES:
        stem = stem[:-1]
    stem = stem.rstrip(" .")
    return stem + extension if stem else "file"


def owner_prefix(account):
    """``quote(account, safe="")``; over-long ones are cut and made unique
    again with a hash of the account."""
    quoted = quote(account, safe="")
    if len(quoted) <= MAX_OWNER_CHARS:
        return quoted
    cut = MAX_OWNER_CHARS - 9
    escape = quoted.rfind("%", cut - 2, cut)  # do not split a %XX escape
    if escape != -1:
        cut = escape
    return quoted[:cut] + "~" + hashlib.sha256(account.encode()).hexdigest()[:8]


def stored_name(account, time_ms, original):
    return f"{owner_prefix(account)}_{time_ms}_{sanitise(original)}"


def is_stored_name(name):
    if not isinstance(name, str) or STORED_NAME.fullmatch(name) is None:
        return False
    try:
        return len(name.encode()) <= MAX_NAME_BYTES
    except UnicodeEncodeError:  # a lone surrogate, from JSON say
        return False


def references(text):
    """The stored names in ``<file>NAME</file>`` tags of a message, in order,
    each once; anything that cannot be a stored name is ignored."""
    names = []
    for name in FILE_REFERENCE.findall(text or ""):
        if is_stored_name(name) and name not in names:
            names.append(name)
    return names


# -- uploads -------------------------------------------------------------

class Upload:
    """One file arriving: ``write`` chunks, then ``finish`` or ``abort``."""

    def __init__(self, library, account, name, original_name, limit=0, over_limit=None):
        self.account = account
        self.name = name
        self.original_name = original_name
        self.size = 0
        self.refusal = None  # the UploadRefused that ended it, if any
        self._library = library
        self._limit = limit  # bytes; 0: none
        self._over_limit = over_limit  # the UploadRefused to raise past it
        self._hash = hashlib.sha256()
        self._hashing = deque()  # (Future, size) of chunks given to the hashing thread
        self._hash_backlog = 0
        descriptor, path = tempfile.mkstemp(dir=library.partial_directory)
        self._partial = Path(path)
        self._final = library.directory / name
        self._file = os.fdopen(descriptor, "wb")
        self._linked = False  # the final name exists (removed again if the upload fails)
        self._state = "open"

    def write(self, chunk):
        """Append ``chunk``; raises UploadRefused (and aborts) past a limit."""
        if self._state != "open":
            raise ValueError(f"upload is {self._state}")
        if self._limit and self.size + len(chunk) > self._limit:
            self.refusal = self._over_limit
            self.abort()
            self._library.refused(self.refusal, self.account)
            raise self.refusal
        self._file.write(chunk)
        self._digest(chunk)
        self.size += len(chunk)

    def _digest(self, chunk):
        """Hash ``chunk`` here, or on the hashing thread (in order: it is
        one thread), waiting only when too much waits for it already."""
        if self.size < INLINE_HASH_BYTES and not self._hashing:
            self._hash.update(chunk)
            return
        chunk = bytes(chunk)  # the caller may reuse its buffer
        self._hashing.append((self._library.hasher.submit(self._hash.update, chunk), len(chunk)))
        self._hash_backlog += len(chunk)
        while self._hashing and (self._hashing[0][0].done() or self._hash_backlog > MAX_HASH_BACKLOG):
            done, size = self._hashing.popleft()
            done.result()
            self._hash_backlog -= size

    @defer.inlineCallbacks
    def finish(self):
        """Seal, move into place and commit the row.  Reactor thread.
        Deferred[FileInfo]; on failure nothing is left behind."""
        if self._state != "open":
            raise self.refusal or ValueError(f"upload is {self._state}")
        self._state = "finishing"
        try:
            yield self._library.in_thread(self._seal)
            info = FileInfo(self.name, self.size, self._hash.hexdigest())
            stored = yield self._library.store.add(self._row(info), self._library.limits.user_quota)
            if not stored:
                self.refusal = QuotaExceeded(self._library.limits.user_quota)
                self._library.refused(self.refusal, self.account)
                raise self.refusal
        except BaseException:
            self._state = "failed"
            self._file.close()
            _remove(self._partial)
            if self._linked:
                _remove(self._final)
            raise
        finally:
            self._library.release_name(self.name)
        self._state = "done"
        audit.file_transfer("upload", self.account, info.name, info.size)
        return info

    def abort(self):
        """Drop what was received.  Any thread; harmless when already over."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._file.close()
        _remove(self._partial)
        self._library.release_name(self.name)

    def _seal(self):
        """Flush to disk and move into place, once hashed (a pool thread:
        all of it may wait)."""
        if self._hashing:
            self._hashing[-1][0].result()  # the hashing thread works in order
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.link(self._partial, self._final)  # unlike rename, never replaces
        self._linked = True
        os.unlink(self._partial)

    def _row(self, info):
        return dict(
            name=info.name, owner=self.account, original_name=self.original_name,
            size=info.size, sha256=info.sha256, create_time=now_ms(),
        )


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the library ---------------------------------------------------------

class FileLibrary:
    def __init__(self, store, directory, limits, reactor):
        self.store = store
        self.directory = Path(directory).resolve()
        self.partial_directory = self.directory / PARTIAL_DIR
        self.limits = limits
        self.reactor = reactor
        self._reserved = set()  # names of uploads in progress
        self._lock = threading.Lock()  # _reserved is touched from two threads
        self.hasher = ThreadPoolExecutor(1, "neochat-file-hash")  # see INLINE_HASH_BYTES
        self.partial_directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.partial_directory.iterdir():  # uploads cut by a crash
            _remove(leftover)

    def refused(self, refusal, account):
        """Count and log an upload refused (any thread: FTP's writes too)."""
        self.reactor.callFromThread(audit.limit_tripped, refusal.limit, None, account)

    def in_thread(self, function, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    # -- uploads

    @defer.inlineCallbacks
    def begin_upload(self, account, original_name):
        """Deferred[Upload] named by the naming rule, or UploadRefused when
        the account's quota is already used up."""
        original = sanitise(original_name)
        limit, over_limit = self.limits.max_file_size, FileTooLarge(self.limits.max_file_size)
        quota = self.limits.user_quota
        if quota:
            left = quota - (yield self.store.used_bytes(account))
            if left <= 0:
                refusal = QuotaExceeded(quota)
                self.refused(refusal, account)
                raise refusal
            if not limit or left < limit:
                limit, over_limit = left, QuotaExceeded(quota)
        name = self._reserve_name(account, original)
        try:
            return Upload(self, account, name, original, limit, over_limit)
        except BaseException:
            self.release_name(name)
            raise

    def _reserve_name(self, account, original):
        """A name neither on disk nor being uploaded: the same millisecond
        twice moves on to the next one."""
        time_ms = now_ms()
        with self._lock:
            while True:
                name = stored_name(account, time_ms, original)
                if name not in self._reserved and not (self.directory / name).exists():
                    self._reserved.add(name)
                    return name
                time_ms += 1

    def release_name(self, name):
        with self._lock:
            self._reserved.discard(name)

    # -- reading

    def may_read(self, account, name):
        """Deferred[bool]: the owner, a granted account, or a member of a
        granted group."""
        if not is_stored_name(name):
            return defer.succeed(False)
        return self.store.may_read(account, name)

    def readable_files(self, account):
        """Deferred[list of row dicts] ``account`` may read, by name."""
        return self.store.readable(account)

    def open_for_reading(self, name):
        """The stored file, opened for binary reading (blocking).  Check
        ``may_read`` first.  Raises FileNotFoundError."""
        if not is_stored_name(name):
            raise FileNotFoundError(errno.ENOENT, "no such file", name)
        return open(self.directory / name, "rb")

    # -- sharing

    def grant_for_message(self, author, names, recipients=(), group_id=None):
        """A message by ``author`` referenced ``names``: its ``recipients``,
        or the members of ``group_id``, may now read those the author may
        read.  Deferred[list of names granted]."""
        names = [name for name in names if is_stored_name(name)]
        if not names or not (recipients or group_id is not None):
            return defer.succeed([])
        return self.store.grant(author, names, recipients, group_id)

    # -- removal

    @defer.inlineCallbacks
    def delete_file(self, account, name):
        """Remove a file ``account`` owns.  Deferred[bool]: False when there
        is no such file of theirs."""
        row = (yield self.store.get(name)) if is_stored_name(name) else None
        if row is None or row["owner"] != account:
            return False
        yield self._remove_files([name])
        return True

    @defer.inlineCallbacks
    def purge_expired(self, now=None):
        """Remove files older than the retention period, file and row
        together.  Deferred[int]: how many."""
        if not self.limits.retention_days:
            return 0
        cutoff = (now_ms() if now is None else now) - int(self.limits.retention_days * DAY_MS)
        removed = 0
        while True:
            names = yield self.store.expired(cutoff, PURGE_BATCH)
            if names:
                yield self._remove_files(names)
                removed += len(names)
            if len(names) < PURGE_BATCH:
                if removed:
                    log.info("purged {count} expired files", count=removed)
                return removed

    @defer.inlineCallbacks
    def delete_account_files(self, account):
        """Remove every file ``account`` owns.  Call it before deleting the
        account: the row cascade alone would leave the files on disk.
        Deferred[int]: how many."""
        names = [row["name"] for row in (yield self.store.owned(account))]
        if names:
            yield self._remove_files(names)
        return len(names)

    @defer.inlineCallbacks
    def _remove_files(self, names):
        yield self.in_thread(lambda: [_remove(self.directory / name) for name in names])
        yield self.store.delete(names)
