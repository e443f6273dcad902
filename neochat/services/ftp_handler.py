"""pyftpdlib classes for the NeoChat file server: accounts, one flat
directory per user, uploads that end with the stored name.

All of this runs on the FTP thread.  What needs the database goes to the
reactor.  Quick reads (read rights, listings, deleting) wait for it through
``handler.ask`` (``blockingCallFromThread``).  What may take long does not
block the FTP thread: the password check (argon2, the throttle's queue),
starting an upload (the quota query) and finishing one (fsync and the row's
commit).  For those, ``ask_later`` stops reading that session's commands,
the reactor does the work, and the answer comes back through the service's
mailbox, which the FTP loop runs; other sessions carry on meanwhile.
"""

import os
import socket
import sys

from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.log import logger
from twisted.internet import defer, threads
from twisted.python.failure import Failure

from neochat.chat import audit
from neochat.chat.errors import ChatError, Forbidden
from neochat.chat.files import UploadRefused, is_stored_name
from neochat.services.tls import modern_context

# e: CWD (only "/"), l: listings, r: RETR, w: STOR/STOU, d: DELE (own files).
# Not granted, hence 550: APPE (a), RNFR/RNTO (f), MKD (m), SITE CHMOD (M), MFMT (T).
PERMISSIONS = "elrwd"
NO_FILE = "No such file"


class AccountAuthorizer:
    """NeoChat accounts; no anonymous access.  Passwords are checked by
    NeoChatHandler.ftp_PASS, without blocking the FTP thread."""

    def __init__(self, home):
        self.home = home

    def get_home_dir(self, username):
        return self.home

    def get_msg_login(self, username):
        return "Welcome to NeoChat files."

    def get_msg_quit(self, username):
        return "Goodbye."

    def has_perm(self, username, perm, path=None):
        return perm in PERMISSIONS

    def get_perms(self, username):
        return PERMISSIONS

    def impersonate_user(self, username, password):
        pass

    def terminate_impersonation(self, username):
        pass


class FlatFS(AbstractedFS):
    """The one directory "/": the files the logged-in account may read.

    There are no subdirectories.  Paths name a stored file by their last
    component once they normalise into the root, so "../x" means "/x".
    """

    def __init__(self, root, cmd_channel):
        super().__init__(root, cmd_channel)
        self._listed = set()  # names LIST showed: their details need no new query

    def _stored_name(self, path):
        directory, name = os.path.split(path)
        return name if directory == self.root and is_stored_name(name) else None

    def _readable(self, path, listed_ok=True):
        """The stored name at ``path``, if the account may read it."""
        name = self._stored_name(path)
        channel = self.cmd_channel
        if name is None or not (
            (listed_ok and name in self._listed)
            or channel.ask(channel.library.may_read, channel.username, name)
        ):
            raise FilesystemError(NO_FILE)
        return name

    def open(self, filename, mode):
        # Only RETR opens files (uploads go through the handler), and it
        # always asks the database afresh.
        name = self._readable(filename, listed_ok=False)
        return self.cmd_channel.library.open_for_reading(name)

    def listdir(self, path):
        if path != self.root:
            raise FilesystemError("No such directory")
        channel = self.cmd_channel
        rows = channel.ask(channel.library.readable_files, channel.username)
        names = [row["name"] for row in rows]
        self._listed = set(names)
        return names

    def isdir(self, path):
        return path == self.root

    def isfile(self, path):
        try:
            self._readable(path)
        except FilesystemError:
            return False
        return os.path.isfile(path)

    def stat(self, path):
        if path != self.root:
            self._readable(path)
        return os.stat(path)

    lstat = stat

    def getsize(self, path):
        return self.stat(path).st_size

    def getmtime(self, path):
        return self.stat(path).st_mtime

    def chdir(self, path):
        if path != self.root:
            raise FilesystemError("There are no directories")
        self.cwd = "/"

    def rmdir(self, path):
        raise FilesystemError("There are no directories")

    def remove(self, path):
        name = self._stored_name(path)
        channel = self.cmd_channel
        if name is None or not channel.ask(channel.library.delete_file, channel.username, name):
            raise FilesystemError("No such file of yours")


class ReceivingFile:
    """What the data channel writes into: an Upload, with the face of the
    file object pyftpdlib expects.  Closing it before the upload concluded
    drops the upload."""

    def __init__(self, upload, path):
        self.upload = upload
        self.name = path
        self.closed = False

    def write(self, chunk):
        self.upload.write(chunk)

    def close(self):
        if not self.closed:
            self.closed = True
            self.upload.abort()


class NeoChatHandler:
    """Mixed into FTPHandler (or TLS_FTPHandler) by ``handler_class``."""

    library = None
    accounts = None
    reactor = None
    answers = None  # the service's Mailbox: callables the FTP loop runs

    def ask(self, function, *args):
        """Run ``function(*args)`` on the reactor; wait for its result."""
        return threads.blockingCallFromThread(self.reactor, function, *args)

    def ask_later(self, function, args, then, orphaned=None):
        """Run ``function(*args)`` on the reactor without waiting: this
        session reads no command until ``then(result)`` runs on the FTP
        thread (``result`` a Failure if it failed).  If the session closed
        meanwhile, ``orphaned(result)`` runs instead, when given."""
        self.del_channel()

        def answered(result):
            if self._closed:
                if orphaned is not None:
                    orphaned(result)
                return
            self.add_channel()
            then(result)

        def on_reactor():
            defer.maybeDeferred(function, *args).addBoth(
                lambda result: self.answers.put(lambda: answered(result)))

        self.reactor.callFromThread(on_reactor)

    def ftp_PASS(self, line):
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        username = self.username
        self.ask_later(self._check_password, (username, line),
                       lambda result: self._password_checked(username, line, result))

    def _check_password(self, username, password):
        """On the reactor: the same check, and throttle, as chat logins."""
        if self.accounts.admission.address_banned(self.remote_ip):
            raise Forbidden("address banned")
        return self.accounts.authenticate(username, password, self.remote_ip, via="ftp")

    def _password_checked(self, username, password, result):
        """Back on the FTP thread with the check's result (a Failure if refused)."""
        if not isinstance(result, Failure):
            self.handle_auth_success(self.authorizer.get_home_dir(username), password,
                                     self.authorizer.get_msg_login(username))
        elif result.check(ChatError) and result.value.stat == 404:
            self.handle_auth_failed("", password)  # pyftpdlib's wording, after its delay
        elif result.check(ChatError):  # throttled or busy: say so now
            self.respond(f"530 {result.value.reason.capitalize()}.")
            self.username = ""
        else:
            logger.error("FTP login check failed: %s", result.getTraceback())
            self.respond("530 Login is unavailable; try again later.")
            self.username = ""

    def pre_process_command(self, line, cmd, arg):
        # neochatctl ban: a logged-in banned account is dropped at its next command.
        if self.authenticated and self.accounts.admission.account_banned(self.username):
            self.respond("421 account banned.")
            self.close_when_done()
            return
        super().pre_process_command(line, cmd, arg)

    def ftp_STOR(self, file, mode="w"):
        if self._restart_position:
            self._restart_position = 0
            self.respond("554 Resuming uploads is not supported.")
            return
        self._receive(self.fs.fs2ftp(file), "STOR")

    def ftp_STOU(self, line):
        if self._restart_position:
            self.respond("450 Can't STOU while REST request is pending.")
            return
        self._receive(line, "STOU")

    def _receive(self, original_name, command):
        self.ask_later(self.library.begin_upload, (self.username, original_name),
                       lambda result: self._upload_begun(result, command), _abort_upload)

    def _upload_begun(self, upload, command):
        if isinstance(upload, Failure):
            if upload.check(UploadRefused):
                self.respond(f"552 {upload.value}.")
            else:
                logger.error("FTP upload could not start: %s", upload.getTraceback())
                self.respond("451 Local error; try again later.")
            return
        file = ReceivingFile(upload, os.path.join(self.fs.root, upload.name))
        if command == "STOU":
            text = f"FILE: {upload.name}"  # RFC 1123's form
        elif self.data_channel is not None:
            text = "Data connection already open. Transfer starting."
        else:
            text = "File status okay. About to open data connection."
        if self.data_channel is not None:
            self.respond(f"125 {text}")
            self.data_channel.file_obj = file
            self.data_channel.enable_receiving(self._current_type, command)
        else:
            self.respond(f"150 {text}")
            self._in_dtp_queue = (file, command)

    def conclude_upload(self, file, finished, reset):
        """The data connection of an upload closed: finish the upload (the
        reply, once the row is committed, names the stored file) or drop it.
        Returns the final reply as pyftpdlib's (text, log function), () when
        it will come later, or None to keep pyftpdlib's."""
        upload = file.upload
        if upload.refusal:
            file.close()
            return (f"552 {upload.refusal}.", logger.info)
        if not finished:  # ABOR, timeout, error: pyftpdlib replies
            file.close()
            return None
        if reset or self._client_gone():
            file.close()
            return ("426 Connection lost; transfer aborted.", logger.info)
        file.closed = True
        self.ask_later(upload.finish, (), lambda result: self._upload_finished(upload, result))
        return ()

    def _upload_finished(self, upload, info):
        if not isinstance(info, Failure):
            self.respond(f"226 Transfer complete. file: {info.name}")
        elif info.check(UploadRefused):
            self.respond(f"552 {info.value}.", logfun=logger.info)
        else:
            logger.error("FTP upload %s could not be stored: %s", upload.name, info.getTraceback())
            self.respond("451 Local error: the file was not stored.", logfun=logger.warning)

    def _client_gone(self):
        """Whether the control connection reached end of file: a data
        connection closing together with it is a client that died midway,
        not the end of the file.  Peeks at the raw socket (TLS or not)."""
        if self._closed:
            return True
        raw = socket.socket(fileno=self._fileno)
        try:
            return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            raw.detach()

    def on_file_sent(self, file):
        self.reactor.callFromThread(audit.file_transfer, "download", self.username, os.path.basename(file),
                                    os.path.getsize(file))

    def flush_account(self):
        # USER or REIN drops a queued upload without closing its file.
        if self._in_dtp_queue is not None:
            self._in_dtp_queue[0].close()
        super().flush_account()


def _abort_upload(upload):
    """An upload begun for a session that closed before hearing of it."""
    if not isinstance(upload, Failure):
        upload.abort()


class UploadingDTP:
    """Mixed into the data channel: concludes an upload before the final
    reply (pyftpdlib calls on_file_received only after replying)."""

    reset_by_client = False

    def handle_close(self):
        # pyftpdlib's recv() calls this from inside its ``except`` when the
        # client reset the connection: a cut, not the end of the file.
        self.reset_by_client = sys.exc_info()[0] is not None
        super().handle_close()

    def close(self):
        if not self._closed and isinstance(self.file_obj, ReceivingFile) and not self.file_obj.closed:
            reply = self.cmd_channel.conclude_upload(
                self.file_obj, self.transfer_finished, self.reset_by_client
            )
            if reply is not None:
                self._resp = reply
        super().close()


def handler_class(library, accounts, settings, reactor, answers):
    """A new FTPHandler subclass for one FTPService: pyftpdlib reads its
    options from class attributes, so they never go on FTPHandler itself."""
    attributes = dict(
        library=library,
        accounts=accounts,
        reactor=reactor,
        answers=answers,
        authorizer=AccountAuthorizer(str(library.directory)),
        abstracted_fs=FlatFS,
        banner="NeoChat file server ready.",
        masquerade_address=settings.masquerade_address,
        auth_failed_timeout=settings.auth_failed_delay,
    )
    if settings.passive_ports:
        first, last = settings.passive_ports
        attributes["passive_ports"] = list(range(first, last + 1))
    control, data = FTPHandler, DTPHandler
    if settings.certfile:
        from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler

        control, data = TLS_FTPHandler, TLS_DTPHandler
        attributes.update(
            certfile=settings.certfile,
            keyfile=settings.keyfile,
            ssl_context=modern_context(settings.certfile, settings.keyfile),
            tls_control_required=settings.tls_required,
            tls_data_required=settings.tls_required,
        )
    attributes["dtp_handler"] = type("NeoChatDTPHandler", (UploadingDTP, data), {})
    return type("NeoChatFTPHandler", (NeoChatHandler, control), attributes)
