"""The seed's GetUserInfo / GetCurrentUser, and editing one's own profile."""

import re

from twisted.internet import defer

from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, NotFound

SEXES = ("male", "female", "neutral")
BIRTHDAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LIMITS = {"user_name": 100, "user_phone": 100, "address": 200}


def check_changes(changes):
    """Only the seed's profile fields, each within its column."""
    for name, value in changes.items():
        if name in LIMITS:
            if len(value) > LIMITS[name]:
                raise BadRequest(f"{name} too long")
        elif name == "sex":
            if value not in SEXES:
                raise BadRequest("sex must be male, female or neutral")
        elif name == "birthday":
            if value and not BIRTHDAY.match(value):
                raise BadRequest("birthday must be YYYY-MM-DD")
        else:
            raise BadRequest(f"not a profile field: {name}")
    if not changes:
        raise BadRequest("nothing to change")
    return changes


class Profiles:
    def __init__(self, users):
        self.users = users

    @defer.inlineCallbacks
    def get(self, account):
        profile = yield self.users.profile(check_account_name(account))
        if profile is None:
            raise NotFound("unknown account")
        return profile

    @defer.inlineCallbacks
    def update(self, session, changes):
        yield self.users.update_profile(session.account, check_changes(changes))
        profile = yield self.get(session.account)
        return profile
