"""Files for ``NeoChatClient`` (a mixin): the seed-000 in-band transfer on
the chat connection (offer, accept, reject, with progress), and seed 002's
FTP upload shared as ``<file>NAME</file>`` (``self.ftp`` downloads)."""

import os

from twisted.internet import defer

from neochat.client.connection import Download


class FileTransfers:
    @defer.inlineCallbacks
    def send_file(self, to, path, progress=None):
        """Offer the file at ``path`` to ``to`` and stream it; ``progress(done,
        total)`` is called as bytes go out.  Fires with the receipt.  Files
        go one at a time (the bytes of one fill the connection)."""
        yield self._sending_file.acquire()
        try:
            connection = yield self._connected()
            length = os.path.getsize(path)
            offer = {"message_type": "file", "send_user": self.account, "rece_user": to,
                     "file_name": os.path.basename(path), "file_length": length}
            with open(path, "rb") as source:
                return (yield connection.send_file(offer, source, progress))
        finally:
            self._sending_file.release()

    @defer.inlineCallbacks
    def accept_file(self, offer, path, progress=None):
        """Download an offered file to ``path`` (through ``path.part``)."""
        connection = yield self._connected()
        partial = path + ".part"
        with open(partial, "wb") as target:
            try:
                yield connection.request({
                    "message_type": "file", "content": "accept", "file_name": offer["file_name"],
                    "file_length": offer["file_length"], "send_user": offer["send_user"],
                    "file_id": offer["file_id"],
                }, download=Download(target, progress))
            except BaseException:
                target.close()
                os.unlink(partial)
                raise
        os.replace(partial, path)
        return path

    @defer.inlineCallbacks
    def share_file(self, to, path, text="", group=False, progress=None):
        """Seed 002's way: upload ``path`` over FTP, then send ``text`` with
        ``<file>NAME</file>``; fires with (stored name, receipt)."""
        name = yield self.ftp.upload(path, progress)
        receipt = yield self.send_message(to, f"{text} <file>{name}</file>".strip(), group=group)
        return name, receipt

    @defer.inlineCallbacks
    def reject_file(self, offer):
        """Turn an offer down; the server deletes the file and tells the sender.
        Success has no reply: a failure arrives as a pushed ``reject`` fail."""
        connection = yield self._connected()
        connection.send({"message_type": "reject", "file_name": offer["file_name"], "file_id": offer["file_id"]})
