"""``neochat-client``: the terminal client, or with ``daemon`` the plugin
daemon.  The terminal client runs Twisted on asyncio (textual needs it), so
the asyncio reactor is installed here, before anything imports the reactor;
the daemon keeps Twisted's default reactor."""

import argparse
import getpass
import os
import sys

DEFAULT_SERVER = "127.0.0.1:7000"
DEFAULT_TOKEN_FILE = os.path.join(
    os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "neochat", "token"
)
PASSWORD_VARIABLE = "NEOCHAT_PASSWORD"


def server_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("give HOST:PORT, e.g. 127.0.0.1:7000")
    return host, int(port)


def parser():
    main = argparse.ArgumentParser(prog="neochat-client", description="NeoChat terminal client")
    main.add_argument("--server", type=server_address, default=DEFAULT_SERVER,
                      help=f"message server (default {DEFAULT_SERVER})")
    main.add_argument("--account", default="", help="account to fill in on the login screen")
    main.add_argument("--ftp-port", type=int, default=2121,
                      help="the server's FTP port, for /share and /get (default 2121)")
    main.add_argument("--downloads", default=os.path.expanduser("~/Downloads"),
                      help="where accepted files are saved (default ~/Downloads)")
    commands = main.add_subparsers(dest="command")
    daemon = commands.add_parser("daemon", help="serve the plugin API on loopback HTTP")
    daemon.add_argument("--server", type=server_address, default=DEFAULT_SERVER)
    daemon.add_argument("--account", required=True)
    daemon.add_argument("--listen", type=int, default=7080, help="loopback port (default 7080; 0: any)")
    daemon.add_argument("--token-file", default=DEFAULT_TOKEN_FILE,
                        help=f"where the token is written, mode 0600 (default {DEFAULT_TOKEN_FILE})")
    daemon.add_argument("--register", action="store_true", help="create the account first")
    daemon.add_argument("--ftp-port", type=int, default=2121, help="the server's FTP port (default 2121)")
    return main


def run_daemon(options):
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from neochat.client.connection import RequestFailed
    from neochat.client.daemon import site, write_token
    from neochat.client.library import NeoChatClient, register

    password = os.environ.get(PASSWORD_VARIABLE) or getpass.getpass(f"password for {options.account}: ")
    host, port = options.server
    client = NeoChatClient(reactor, host, port, options.account, password, ftp_port=options.ftp_port)
    outcome = {"code": 0}

    @defer.inlineCallbacks
    def start():
        try:
            if options.register:
                yield register(reactor, host, port, options.account, password).addErrback(
                    lambda failure: failure.trap(RequestFailed) and failure.value.reason == "account exists"
                    or failure)
            yield client.start()
            token = write_token(options.token_file)
            listening = yield TCP4ServerEndpoint(reactor, options.listen, interface="127.0.0.1").listen(
                site(client, token))
        except Exception as error:  # shown to the user, who runs us from a shell
            print(f"neochat-client daemon: {error}", file=sys.stderr)
            outcome["code"] = 1
            yield client.stop()
            reactor.stop()
            return
        print(f"serving http://127.0.0.1:{listening.getHost().port} as {options.account}; "
              f"token in {options.token_file}", flush=True)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", client.stop)
    reactor.run()
    return outcome["code"]


def run_terminal(options):
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from neochat.client.tui import run

    return run(options)


def main(argv=None):
    options = parser().parse_args(argv)
    if options.command == "daemon":
        return run_daemon(options)
    return run_terminal(options)

