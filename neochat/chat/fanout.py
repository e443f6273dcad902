"""Seed 002's ``friends`` naming several accounts: the text goes to each of
them as a private message of its own, or, when one of them cannot get it,
to none."""

import hashlib
import re

from twisted.internet import defer

from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, Forbidden, NotFound

MAX_RECIPIENTS = 100
SEPARATORS = re.compile(r"[\s,]+")


def recipients(value):
    """The accounts in a ``friends`` value (space or comma separated), each once, in order."""
    names = list(dict.fromkeys(name for name in SEPARATORS.split(value) if name))
    if not names:
        raise BadRequest("missing field: friends")
    if len(names) > MAX_RECIPIENTS:
        raise BadRequest(f"friends names more than {MAX_RECIPIENTS} accounts")
    return [check_account_name(name) for name in names]


@defer.inlineCallbacks
def send_to_each(chat, session, names, content, client_id=None):
    """[ChatMessage], one per account, each committed before the next.  Every
    account is checked first (it exists; with friends-only, it is a friend),
    so a typo refuses the whole message before anyone got it."""
    if client_id is not None and not (isinstance(client_id, str) and 0 < len(client_id) <= 64):
        raise BadRequest("bad client_id")
    known = yield chat.store.users.existing(names)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise NotFound(f"unknown recipient: {' '.join(unknown)}")
    if chat.friends_only:
        for name in names:
            if not (yield chat.friends.are_friends(session.account, name)):
                raise Forbidden(f"not a friend: {name}")
    messages = []
    for name in names:
        message = yield chat.send_private(session, name, content, _client_id_for(client_id, name))
        messages.append(message)
    return messages


def _client_id_for(client_id, name):
    """One id per copy, the same on a retry, so that each copy stays idempotent."""
    if client_id is None:
        return None
    return hashlib.sha256(f"{client_id}\0{name}".encode()).hexdigest()[:32]
