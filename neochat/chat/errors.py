"""Typed failures of chat operations.

Each carries a short stable ``reason`` (the JSON dialect's ``"reason"``) and
an HTTP-like ``stat`` (the header dialect's ``stat:``).  docs/protocol.md
lists them all.
"""


class ChatError(Exception):
    stat = 400

    def __init__(self, reason, stat=None):
        super().__init__(reason)
        self.reason = reason
        if stat is not None:
            self.stat = stat


class BadRequest(ChatError):
    stat = 400


class NotLoggedIn(ChatError):
    stat = 401

    def __init__(self, reason="not logged in"):
        super().__init__(reason)


class Forbidden(ChatError):
    stat = 403


class NotFound(ChatError):
    stat = 404


class Conflict(ChatError):
    stat = 409
