"""The seed's GetUserInfo / GetCurrentUser, editing one's own profile, and
the profile fields a registration may carry (seed 002's user table)."""

import re

from twisted.internet import defer

from neochat.chat.accounts import check_account_name
from neochat.chat.errors import BadRequest, NotFound

SEXES = ("male", "female", "neutral")
BIRTHDAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LIMITS = {"user_name": 100, "user_phone": 100, "address": 200}
FIELDS = ("user_name", "user_phone", "sex", "birthday", "address")


def profile_fields(request):
    """The profile fields present in a request (registration carries them too)."""
    return {name: request[name] for name in FIELDS if request.get(name) is not None}


def check_profile(fields):
    """Only the seed's profile fields, each a string within its column."""
    for name, value in fields.items():
        if name in FIELDS and not isinstance(value, str):
            raise BadRequest(f"wrong type for field: {name}")
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
    return fields


def check_changes(changes):
    if not changes:
        raise BadRequest("nothing to change")
    return check_profile(changes)


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
