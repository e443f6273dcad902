"""Files over NeoChat's FTP service, seed 002's way: upload, then share the
stored name in a message as ``<file>NAME</file>``; the recipient downloads
it by that name (docs/files.md).

ftplib blocks, so each transfer runs in a thread of the reactor's pool and
reports progress back to the reactor with ``callFromThread``.  A download
goes to ``PATH.part`` first; if it breaks off, the next attempt resumes
where the part ends with ``REST`` (the server allows it for downloads, not
for uploads).
"""

import ftplib
import os
import re

from twisted.internet import threads

BLOCK = 64 * 1024
ATTEMPTS = 3  # tries of one download, each resuming the last
TIMEOUT = 30  # seconds of silence before ftplib gives up
_STORED = re.compile(r"file: (\S+)")
_REFERENCE = re.compile(r"<file>([^<>\s]+)</file>")


def file_references(text):
    """The stored file names a message's text refers to."""
    return _REFERENCE.findall(text or "")


class FtpFiles:
    def __init__(self, reactor, host, port, account, password, tls=False):
        self.reactor = reactor
        self.address = (host, port)
        self._login = (account, password)
        self._tls = tls

    def _connect(self):
        ftp = (ftplib.FTP_TLS if self._tls else ftplib.FTP)(timeout=TIMEOUT)
        ftp.connect(*self.address)
        ftp.login(*self._login)
        if self._tls:
            ftp.prot_p()
        return ftp

    def _reporter(self, progress, done, total):
        """A callback for ftplib's blocks that tells ``progress`` in the reactor."""
        state = {"done": done}

        def block(data):
            state["done"] += len(data)
            if progress is not None:
                self.reactor.callFromThread(progress, state["done"], total)
            return data

        return block

    def upload(self, path, progress=None):
        """Fires with the stored name of the file at ``path``."""
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._upload, path, progress)

    def _upload(self, path, progress):
        total = os.path.getsize(path)
        ftp = self._connect()
        try:
            with open(path, "rb") as source:
                reply = ftp.storbinary(f"STOR {os.path.basename(path)}", source, BLOCK,
                                       self._reporter(progress, 0, total))
        finally:
            ftp.close()
        stored = _STORED.search(reply)
        if stored is None:
            raise ftplib.error_reply(f"no stored name in {reply!r}")
        return stored.group(1)

    def download(self, name, path, progress=None):
        """Fetch the stored file ``name`` to ``path``; fires with ``path``."""
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._download, name,
                                         path, progress)

    def _download(self, name, path, progress):
        partial = path + ".part"
        for attempt in range(ATTEMPTS):
            try:
                self._fetch(name, partial, progress)
                break
            except (OSError, EOFError, ftplib.error_temp):
                if attempt == ATTEMPTS - 1:
                    raise  # PATH.part stays: a later download resumes it
        os.replace(partial, path)
        return path

    def _fetch(self, name, partial, progress):
        offset = os.path.getsize(partial) if os.path.exists(partial) else 0
        ftp = self._connect()
        try:
            ftp.voidcmd("TYPE I")
            total = ftp.size(name)
            if offset > total:  # not a part of this file: start again
                os.unlink(partial)
                offset = 0
            if offset == total:
                return
            with open(partial, "ab") as target:
                report = self._reporter(progress, offset, total)
                ftp.retrbinary(f"RETR {name}", lambda data: target.write(report(data)), BLOCK,
                               rest=offset or None)
        finally:
            ftp.close()
