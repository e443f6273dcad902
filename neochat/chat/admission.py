"""Who may come in: account and address bans, and whether anyone may
register.  Held in memory (checked on every login and connection), loaded
from the store at start and again whenever ``neochatctl`` changes it, on
every node of a cluster (admin/operations.py)."""

import ipaddress

from neochat.chat.errors import Forbidden

ACCOUNT, ADDRESS = "account", "address"
REGISTRATION = "registration"  # the settings row: "open" or "closed"


def network(text):
    """An IP address or CIDR network (``203.0.113.7``, ``2001:db8::/32``);
    ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


class Admission:
    def __init__(self):
        self.registration_open = True
        self._accounts = {}  # account -> reason
        self._networks = {}  # ip_network -> reason

    def load(self, bans, settings):
        """``bans``: store rows {kind, target, reason}; ``settings``: {name: value}."""
        self._accounts.clear()
        self._networks.clear()
        for ban in bans:
            self.ban(ban["kind"], ban["target"], ban["reason"])
        self.registration_open = settings.get(REGISTRATION, "open") == "open"

    def ban(self, kind, target, reason=""):
        if kind == ACCOUNT:
            self._accounts[target] = reason
        else:
            self._networks[network(target)] = reason

    def unban(self, kind, target):
        if kind == ACCOUNT:
            self._accounts.pop(target, None)
        else:
            self._networks.pop(network(target), None)

    def account_banned(self, account):
        return account in self._accounts

    def address_banned(self, host):
        """True if ``host`` (an IP address string) is in a banned network."""
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # not an IP peer (a UNIX socket)
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in banned for banned in self._networks)

    def check_registration(self):
        if not self.registration_open:
            raise Forbidden("registration closed")

    def check_account(self, account):
        if account in self._accounts:
            raise Forbidden("account banned")
