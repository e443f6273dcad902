"""The plugin daemon: one logged-in ``NeoChatClient`` served to local plugins
in any language as HTTP/JSON on loopback (docs/plugin-api.md).

Every request needs ``Authorization: Bearer <token>``; the token is random
and written to a file only the user can read.  ``GET /messages?wait=N``
long-polls: it answers as soon as a message is in the inbox, or with an
empty list after N seconds.
"""

import inspect
import json
import os
import secrets
from urllib.parse import unquote

from twisted.internet import defer
from twisted.web import resource, server

from neochat.client.connection import RequestFailed
from neochat.client.library import PRESENCE, ClientStopped, LimitReached

MAX_BODY = 128 * 1024  # bytes of one request body
MAX_WAIT = 60  # seconds a long poll may wait
MAX_POLLERS = 64  # long polls waiting at once
NOT_FOUND_REASONS = ("unknown", "no such", "not a member", "not a friend")
OFFER_FIELDS = ("file_name", "file_length", "send_user", "file_id")


def write_token(path):
    """A new random token in a file of mode 0600; returns the token."""
    token = secrets.token_urlsafe(32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(descriptor, "w") as token_file:
        token_file.write(token + "\n")
    return token


class HttpError(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


def _status_of(failure):
    if failure.check(HttpError):
        return failure.value.status
    if failure.check(RequestFailed):
        reason = failure.value.reason
        return 404 if reason.startswith(NOT_FOUND_REASONS) else 400
    if failure.check(ClientStopped, LimitReached):
        return 503
    if failure.check(OSError):
        return 400  # a local path that cannot be read or written
    return 500


class PluginApi(resource.Resource):
    isLeaf = True

    def __init__(self, client, token):
        super().__init__()
        self.client = client
        self._authorization = f"Bearer {token}".encode()
        self._pollers = []  # (Deferred, timer) of waiting long polls
        client.subscribe(self._pushed)

    def render(self, request):
        if not secrets.compare_digest(request.getHeader(b"authorization") or b"", self._authorization):
            request.setResponseCode(401)
            request.setHeader("www-authenticate", "Bearer")
            return self._json(request, {"error": "missing or wrong token"})
        path = [unquote(part.decode()) for part in request.postpath if part]
        route = getattr(self, f"{request.method.decode().lower()}_{path[0] if path else ''}", None)
        try:
            inspect.signature(route).bind(request, *path[1:])
        except (TypeError, ValueError):  # no such method, or the wrong number of path parts
            route = None
        if route is None:
            request.setResponseCode(404)
            return self._json(request, {"error": "no such endpoint"})
        result = defer.maybeDeferred(route, request, *path[1:])
        result.addCallbacks(lambda body: self._finish(request, body), lambda failure: self._fail(request, failure))
        request.notifyFinish().addErrback(lambda _: result.cancel())
        return server.NOT_DONE_YET

    def _json(self, request, body):
        request.setHeader("content-type", "application/json; charset=utf-8")
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _finish(self, request, body):
        request.write(self._json(request, body))
        request.finish()

    def _fail(self, request, failure):
        if failure.check(defer.CancelledError):
            return  # the plugin went away
        request.setResponseCode(_status_of(failure))
        reason = failure.value.reason if failure.check(RequestFailed) else str(failure.value)
        self._finish(request, {"error": reason})

    def _body(self, request):
        data = request.content.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise HttpError(413, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "body is not a JSON object")
        return body

    @staticmethod
    def _argument(request, name, default=None):
        values = request.args.get(name.encode())
        return values[0].decode() if values else default

    @staticmethod
    def _number(text, name, low, high):
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise HttpError(400, f"{name} must be a number") from None
        if not low <= value <= high:
            raise HttpError(400, f"{name} must be {low} to {high}")
        return value

    # -- endpoints -----------------------------------------------------------

    def get_messages(self, request):
        """The inbox (and clears it); waits up to ``wait`` seconds for one."""
        wait = self._number(self._argument(request, "wait", "0"), "wait", 0, MAX_WAIT)
        messages = self.client.get_message()
        if messages or wait == 0:
            return {"messages": messages}
        if len(self._pollers) >= MAX_POLLERS:
            raise HttpError(503, f"{MAX_POLLERS} long polls already wait")
        waiter = defer.Deferred(lambda d: self._forget(d))
        timer = self.client.reactor.callLater(wait, self._wake, waiter)
        self._pollers.append((waiter, timer))
        return waiter

    def _forget(self, waiter):
        for entry in self._pollers:
            if entry[0] is waiter:
                self._pollers.remove(entry)
                entry[1].cancel()

    def _wake(self, waiter):
        self._pollers = [entry for entry in self._pollers if entry[0] is not waiter]
        waiter.callback({"messages": self.client.get_message()})

    def _pushed(self, message):
        if message.get("message_type") in PRESENCE or not self._pollers:
            return  # presence updates GET /online, not the inbox
        waiter, timer = self._pollers.pop(0)
        timer.cancel()
        # Next turn, so that the rest of what arrived in one read goes along.
        self.client.reactor.callLater(0, lambda: waiter.callback({"messages": self.client.get_message()}))

    def post_send(self, request):
        body = self._body(request)
        content = body.get("content")
        if not isinstance(content, str):
            raise HttpError(400, "content must be a string")
        to, group = body.get("to"), body.get("group")
        if not all(value is None or isinstance(value, str) for value in (to, group)):
            raise HttpError(400, "to and group must be strings")
        if group is not None:
            return self.client.send_message(group, content, group=True)
        return self.client.send_message(to, content)

    def get_users(self, request, account):
        return self.client.get_user_info(account)

    def get_me(self, request):
        return self.client.get_current_user()

    def get_online(self, request):
        return {"online": sorted(self.client.online)}

    def get_history(self, request):
        number = self._number(self._argument(request, "number", "20"), "number", 1, 100)
        before = self._argument(request, "before_id")
        group = self._argument(request, "group")
        conversation = group if group is not None else self._argument(request, "with")
        return self.client.get_old_message(
            conversation, number, group=group is not None,
            before_id=None if before is None else self._number(before, "before_id", 1, 2**63),
        ).addCallback(lambda messages: {"messages": messages})

    def post_files(self, request, action="send"):
        """In-band files: ``POST /files`` {to, path} offers a local file;
        ``/files/accept`` {offer, path} downloads an offer from /messages to
        ``path``; ``/files/reject`` {offer} turns it down."""
        body = self._body(request)
        if action == "send":
            return self.client.send_file(self._string(body, "to"), self._string(body, "path"))
        offer = body.get("offer")
        if not isinstance(offer, dict) or not all(name in offer for name in OFFER_FIELDS):
            raise HttpError(400, "offer must be a file message from /messages")
        if action == "accept":
            return self.client.accept_file(offer, self._string(body, "path")).addCallback(
                lambda path: {"path": path})
        if action == "reject":
            return self.client.reject_file(offer).addCallback(lambda _: {})
        raise HttpError(404, "no such endpoint")

    def post_ftp(self, request, action):
        """Seed 002's files over FTP: ``/ftp/share`` {to or group, path, text}
        uploads and sends ``<file>NAME</file>``; ``/ftp/get`` {name, path}
        downloads a shared file (resuming with REST)."""
        body = self._body(request)
        if action == "share":
            group = body.get("group")
            to = group if isinstance(group, str) else self._string(body, "to")
            text = body.get("text", "")
            if not isinstance(text, str):
                raise HttpError(400, "text must be a string")
            return self.client.share_file(to, self._string(body, "path"), text, group=group is not None).addCallback(
                lambda shared: {"name": shared[0], **shared[1]})
        if action == "get":
            return self.client.ftp.download(self._string(body, "name"), self._string(body, "path")).addCallback(
                lambda path: {"path": path})
        raise HttpError(404, "no such endpoint")

    @staticmethod
    def _string(body, name):
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise HttpError(400, f"{name} must be a string")
        return value

    def post_operation(self, request):
        """Any shared operation of docs/protocol.md: friends, groups, profiles."""
        body = self._body(request)
        message_type = body.pop("message_type", None)
        if not isinstance(message_type, str) or not message_type.startswith(("friend_", "group_", "set_user_info")):
            raise HttpError(400, "message_type must be a friend_, group_ or set_user_info operation")
        return self.client.operation(message_type, **body)


def site(client, token):
    return server.Site(PluginApi(client, token))
