"""Files over HTTP: upload into and download from the file library, with
the names, limits and read rights FTP and the in-band transfer have.

Authentication is the bearer token a logged-in WebSocket session gets with
``web_token``: ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.

An upload's body streams straight into a library ``Upload`` as it arrives
(``StreamingRequest``); nothing is held in memory or spooled to a temporary
file first.  The request names the file in the ``X-File-Name`` header
(URL-encoded UTF-8), so the upload can start before the body.  Bodies of any
other request are discarded.  Downloads stream with ``static.File``.
"""

import io
import json
from urllib.parse import quote, unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server, static, util

from neochat.chat import audit
from neochat.chat.files import UploadRefused

log = Logger()

NAME_HEADER = b"x-file-name"


def header_token(request):
    """The token from the Authorization header (usable before the query is parsed)."""
    header = request.requestHeaders.getRawHeaders(b"authorization", [b""])[0]
    scheme, _, token = header.partition(b" ")
    return token.strip().decode("ascii", "replace") if scheme.lower() == b"bearer" else None


def bearer_token(request):
    """The header's token, else the ``token`` query parameter (links)."""
    values = request.args.get(b"token") or [b""]
    return header_token(request) or values[0].decode("ascii", "replace")


def json_response(request, code, body):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class ErrorPage(resource.Resource):
    isLeaf = True

    def __init__(self, code, reason):
        super().__init__()
        self.code, self.reason = code, reason

    def render(self, request):
        return json_response(request, self.code, {"error": self.reason})


class IncomingBody:
    """An upload body on its way into the library.  Chunks that come before
    the upload is ready wait in a list while the connection is paused."""

    def __init__(self, request, library, account, original_name):
        self.transport = request.channel.transport
        self.upload = None
        self.refusal = None  # (code, reason) once refused
        self._early = []
        self._cut = False
        self.ready = library.begin_upload(account, original_name)
        self.ready.addCallbacks(self._started, self._not_started)
        if self.upload is None and self.refusal is None:
            self.transport.pauseProducing()

    def _started(self, upload):
        self.upload = upload
        if self._cut:  # the client went away while the upload was set up
            upload.abort()
            return
        early, self._early = self._early, None
        for chunk in early:
            self.write(chunk)
        self.transport.resumeProducing()

    def _not_started(self, failure):
        self._early = None
        if failure.check(UploadRefused):
            self.refusal = (413, str(failure.value))
        else:
            log.failure("HTTP upload could not start", failure)
            self.refusal = (500, "internal error")
        self.transport.resumeProducing()

    def write(self, chunk):
        if self._early is not None and self.upload is None:
            self._early.append(chunk)
        elif self.upload is not None and self.refusal is None:
            try:
                self.upload.write(chunk)
            except UploadRefused as refused:
                self.refusal = (413, str(refused))

    def abort(self):
        self._cut = True
        if self.upload is not None:
            self.upload.abort()


class StreamingRequest(server.Request):
    """A request whose body never lands in memory: ``X-File-Name`` with a
    valid token streams it into an upload, anything else is dropped."""

    body = None  # IncomingBody, for an authorised upload
    body_refusal = None  # (code, reason) for an upload refused at its headers

    def gotLength(self, length):
        self.content = io.BytesIO()
        name = self.requestHeaders.getRawHeaders(NAME_HEADER)
        if name is None:
            return
        site = self.channel.site
        account = site.tokens.account(header_token(self))
        if account is None:
            self.body_refusal = (401, "log in over the WebSocket and send web_token first")
            return
        original = unquote(name[0].decode("latin-1"))
        self.body = IncomingBody(self, site.library, account, original)

    def handleContentChunk(self, data):
        if self.body is not None:
            self.body.write(data)

    def finish(self):
        if self.body is not None:
            self.body.abort()  # a body no upload handler took; harmless once finished
        super().finish()

    def connectionLost(self, reason):
        if self.body is not None:
            self.body.abort()
        super().connectionLost(reason)


class FilesResource(resource.Resource):
    """``POST /files`` uploads, ``GET /files/NAME`` downloads."""

    def __init__(self, library, tokens):
        super().__init__()
        self.library = library
        self.tokens = tokens

    def render_POST(self, request):
        if request.body_refusal is not None:
            code, reason = request.body_refusal
            return json_response(request, code, {"error": reason})
        if request.body is None:
            return json_response(request, 400, {"error": "missing header: X-File-Name"})
        gone = []
        request.notifyFinish().addErrback(gone.append)
        self._finish_upload(request, request.body, gone)
        return server.NOT_DONE_YET

    @defer.inlineCallbacks
    def _finish_upload(self, request, body, gone):
        code, reply = 201, None
        yield body.ready  # a refusal to start is recorded in body.refusal
        if body.refusal is None:
            try:
                info = yield body.upload.finish()
                reply = {"name": info.name, "size": info.size, "sha256": info.sha256}
            except UploadRefused as refused:
                body.refusal = (413, str(refused))
            except Exception:
                log.failure("HTTP upload could not finish")
                body.refusal = (500, "internal error")
        if body.refusal is not None:
            body.abort()
            code, reply = body.refusal[0], {"error": body.refusal[1]}
        if not gone:  # still connected
            request.write(json_response(request, code, reply))
            request.finish()

    def getChild(self, name, request):
        if request.method not in (b"GET", b"HEAD"):
            return ErrorPage(405, "method not allowed")
        account = self.tokens.account(bearer_token(request))
        if account is None:
            return ErrorPage(401, "log in over the WebSocket and send web_token first")
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            return ErrorPage(403, "you may not read that file")
        return util.DeferredResource(self._download(account, name))

    @defer.inlineCallbacks
    def _download(self, account, name):
        if not (yield self.library.may_read(account, name)):
            return ErrorPage(403, "you may not read that file")
        row = yield self.library.store.get(name)
        path = self.library.directory / name
        if row is None or not path.is_file():
            return ErrorPage(404, "no such file")
        return Download(str(path), row["original_name"], account, name)


class Download(static.File):
    """The stored file as an attachment, never rendered by the browser;
    each whole or partial GET that ends sent is counted and logged (audit)."""

    isLeaf = True

    def __init__(self, path, original_name, account, name):
        super().__init__(path, defaultType="application/octet-stream")
        self.type, self.encoding = "application/octet-stream", None
        self.original_name = original_name
        self.account, self.name = account, name

    def render_GET(self, request):
        request.setHeader(b"content-disposition",
                          b"attachment; filename*=UTF-8''" + quote(self.original_name, safe="").encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"private, no-store")
        if request.method == b"GET":  # counted once sent; a download cut off is not
            request.notifyFinish().addCallbacks(self._sent, lambda _: None, callbackArgs=(request,))
        return super().render_GET(request)

    def _sent(self, _, request):
        if request.code in (200, 206):
            audit.file_transfer("download", self.account, self.name, request.sentLength)
