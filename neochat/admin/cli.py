"""``neochatctl VERB ...``: one verb per subcommand, as prosodyctl and
ejabberdctl.  Verbs run in the server through its admin socket when it runs,
else straight on the database; ``online`` and ``kick`` need the server.

Exit status: 0 done; 1 refused (the message says why); 2 bad usage;
3 needs the running server; 4 ``check`` found problems; 5 the database
or the configuration is unusable.
"""

import argparse
import getpass
import json
import sys

from twisted.python import usage

from neochat.admin import client
from neochat.admin.offline import run_offline
from neochat.chat.admission import ACCOUNT, ADDRESS
from neochat.chat.errors import ChatError
from neochat.config_file import CONFIG_VARIABLE
from neochat.services.admin import socket_path

OK, REFUSED, USAGE, NOT_RUNNING, CHECK_FAILED, UNUSABLE = 0, 1, 2, 3, 4, 5
LIVE_ONLY = ("online", "kick")


class Failed(Exception):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def parser():
    top = argparse.ArgumentParser(
        prog="neochatctl",
        description="Administer NeoChat. Verbs run in the server through its admin socket when it runs,"
                    " else straight on the database; online and kick need the server.",
        epilog="exit status: 0 done, 1 refused, 2 bad usage, 3 needs the running server,"
               " 4 check found problems, 5 configuration or database unusable",
    )
    top.add_argument("--config", help=f"the server's TOML config file (default: ${CONFIG_VARIABLE})")
    top.add_argument("--data-dir", help="the server's data dir (overrides the config file)")
    top.add_argument("--db", help="database URL (overrides the config file and $NEOCHAT_DB)")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, text, *arguments):
        sub = verbs.add_parser(name, help=text, description=text)
        for names, options in arguments:
            sub.add_argument(*names, **options)
        return sub

    account = (("account",), {})
    password = (("--password-file",), {"help": "read the password from this file's first line"
                                       " (default: prompt, or stdin when it is not a terminal)"})
    reason = (("--reason",), {"help": "shown to the user and logged"})
    verb("adduser", "create an account (even while registration is closed)", account, password)
    verb("passwd", "set an account's password", account, password)
    verb("deluser", "delete an account with its files, messages, friendships and groups", account)
    verb("users", "list accounts", (("search",), {"nargs": "?", "default": "", "help": "part of an account or name"}),
         (("--limit",), {"type": int, "default": 1000}))
    verb("online", "list who is online (needs the server)")
    verb("kick", "disconnect an account (needs the server)", account, reason)
    for name, text in (("ban", "refuse an account's logins (kicking it) or an address's connections"),
                       ("unban", "lift a ban")):
        sub = verb(name, text, (("account",), {"nargs": "?"}),
                   (("--address",), {"help": "an IP address or CIDR network instead of an account"}))
        if name == "ban":
            sub.add_argument(*reason[0], **reason[1])
    verb("bans", "list bans")
    verb("registration", "show, open or close registration", (("state",), {"nargs": "?", "choices": ("open", "closed")}))
    groups = verbs.add_parser("groups", help="list, show, create, delete groups and set roles")
    group_verbs = groups.add_subparsers(dest="group_verb", required=True, metavar="ACTION")
    group_verbs.add_parser("list").add_argument("search", nargs="?", default="")
    group_verbs.add_parser("show").add_argument("group_id")
    create = group_verbs.add_parser("create")
    create.add_argument("group_id")
    create.add_argument("owner", help="the account that becomes its creator")
    create.add_argument("--introduction", default="")
    group_verbs.add_parser("delete").add_argument("group_id")
    role = group_verbs.add_parser("role", help="make a member creator, admin or member")
    for name in ("group_id", "account"):
        role.add_argument(name)
    role.add_argument("role", choices=("creator", "admin", "member"))
    verb("stats", "accounts, online, messages today, files and bytes, calls")
    verb("check", "check the configuration, database, ports, certificates and data dir")
    verb("backup", "copy the database and the files into a new directory, online",
         (("directory",), {}))
    verb("restore", "restore a backup into an empty data dir (the server must be stopped)",
         (("directory",), {}))
    return top


# Parsed arguments that are not Administration's keyword arguments.
NOT_FIELDS = {"config", "data_dir", "db", "json", "verb", "group_verb", "password_file", "address"}


def request_of(arguments):
    """(verb, keyword arguments) for Administration: the parsed arguments by
    their names, with the password read, and a ban's kind and target."""
    verb = arguments.verb
    fields = {name: value for name, value in vars(arguments).items() if name not in NOT_FIELDS and value is not None}
    if verb in ("adduser", "passwd"):
        fields["password"] = read_password(arguments)
    elif verb in ("ban", "unban"):
        if (arguments.account is None) == (arguments.address is None):
            raise Failed(f"{verb}: name an account or give --address", USAGE)
        account = fields.pop("account", None)
        fields["kind"], fields["target"] = (ACCOUNT, account) if account is not None else (ADDRESS, arguments.address)
    elif verb == "groups":
        verb = "groups" if arguments.group_verb == "list" else f"group_{arguments.group_verb}"
    return verb, fields


def read_password(arguments):
    if arguments.password_file:
        with open(arguments.password_file, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {arguments.account}: ")
    if getpass.getpass("Again: ") != first:
        raise Failed("the passwords differ", REFUSED)
    return first


def settings_of(arguments):
    """The server's Settings from the same config file and options."""
    from neochat.tap import Options

    argv = []
    for name in ("config", "data_dir", "db"):
        value = getattr(arguments, name)
        if value:
            argv += [f"--{name.replace('_', '-')}", value]
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as error:
        raise Failed(f"configuration: {error}", UNUSABLE) from None
    return options.settings()


def execute(arguments):
    """The command's result (JSON-ready); Failed for everything else."""
    if arguments.verb == "check":
        from neochat.admin.check import CONFIG, problem, run_checks
        try:
            settings = settings_of(arguments)
        except Failed as failed:
            return [problem(CONFIG, str(failed).removeprefix("configuration: "))]
        return run_checks(settings)
    settings = settings_of(arguments)
    if arguments.verb in ("backup", "restore"):
        from neochat.admin import backup
        return getattr(backup, arguments.verb)(settings, arguments.directory)
    verb, fields = request_of(arguments)
    path = socket_path(settings)
    try:
        return client.request(path, verb, fields)
    except client.NoServer as error:
        if verb in LIVE_ONLY:
            raise Failed(f"{verb} needs the running server: {error}", NOT_RUNNING) from None
    except client.Refused as refused:
        raise Failed(refused.reason, REFUSED) from None
    try:
        return run_offline(settings, verb, fields)
    except ChatError as error:
        raise Failed(error.reason, REFUSED) from None
    except Exception as error:
        raise Failed(f"database {settings.database_url() or 'sqlite'}: {error}", UNUSABLE) from None


def main(argv=None):
    arguments = parser().parse_args(argv)
    try:
        result = execute(arguments)
    except (Failed, OSError, ValueError) as error:
        status = error.status if isinstance(error, Failed) else REFUSED
        print(f"neochatctl {arguments.verb}: {error}", file=sys.stderr)
        if arguments.json:
            print(json.dumps({"error": str(error), "status": status}))
        return status
    if arguments.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render(result))
    if arguments.verb == "check" and not all(item["ok"] for item in result):
        return CHECK_FAILED
    return OK


def render(result):
    """Plain text: a table for lists of rows, ``name: value`` lines for a record."""
    if isinstance(result, list):
        if not result:
            return "(none)"
        if all(isinstance(row, dict) for row in result):
            columns = list(result[0])
            rows = [[_text(row.get(column)) for column in columns] for row in result]
            widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
            lines = [columns] + rows
            return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                             for line in lines)
        return "\n".join(_text(item) for item in result)
    if isinstance(result, dict):
        return "\n".join(f"{name}:\n{_indent(render(value))}" if isinstance(value, list) else f"{name}: {_text(value)}"
                         for name, value in result.items())
    return _text(result)


def _indent(text):
    return "\n".join("  " + line for line in text.splitlines())


def _text(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
