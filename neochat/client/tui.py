"""The terminal client: a textual ``App`` running on Twisted's asyncio reactor.

``run`` starts the reactor on the asyncio loop and the app as a task in it,
so the library's Deferreds and textual's widgets share one thread.  The login
screen is here; the chat screen is in ``chat_screen``.
"""

import asyncio

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from neochat.client.bridge import on_app
from neochat.client.chat_screen import ChatScreen
from neochat.client.connection import RequestFailed
from neochat.client.library import NeoChatClient, register


class LoginScreen(Screen):
    def __init__(self, server, account):
        super().__init__()
        self.server, self.account = server, account

    def compose(self) -> ComposeResult:
        host, port = self.server
        with Vertical(id="login-box"):
            yield Label("NeoChat", id="login-title")
            yield Input(f"{host}:{port}", placeholder="server host:port", id="server")
            yield Input(self.account, placeholder="account", id="account")
            yield Input(placeholder="password", password=True, id="password")
            with Horizontal(id="login-buttons"):
                yield Button("Log in", variant="primary", id="login")
                yield Button("Register", id="register")
            yield Static("", id="login-status")
        yield Footer()

    def on_mount(self):
        self.query_one("#password" if self.account else "#account", Input).focus()

    def on_input_submitted(self, event):
        if event.input.id == "password":
            self.submit(register_first=False)
        else:
            self.focus_next()

    def on_button_pressed(self, event):
        self.submit(register_first=event.button.id == "register")

    def show(self, text, error=False):
        status = self.query_one("#login-status", Static)
        status.update(text)
        status.set_class(error, "error")

    def submit(self, register_first):
        server = self.query_one("#server", Input).value.strip()
        account = self.query_one("#account", Input).value.strip()
        password = self.query_one("#password", Input).value
        host, _, port = server.rpartition(":")
        if not (host and port.isdigit() and account and password):
            self.show("give server host:port, account and password", error=True)
            return
        self.show(f"connecting to {server}…")
        self.app.log_in(host, int(port), account, password, register_first).addErrback(on_app(self.app, self._failed))

    def _failed(self, failure):
        reason = failure.value.reason if failure.check(RequestFailed) else str(failure.value)
        self.show(reason, error=True)


class NeoChatApp(App):
    TITLE = "NeoChat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]
    CSS = """
    #login-box { width: 60; height: auto; margin: 2 4; padding: 1 2; border: round $accent; }
    #login-title { text-style: bold; color: $accent; }
    #login-buttons { height: auto; }
    .error { color: $error; text-style: bold; }
    #contacts { width: 28; border-right: solid $primary; }
    #title { text-style: bold; background: $primary-darken-2; padding: 0 1; }
    #log { height: 1fr; }
    #status { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #transfer { height: 1; }
    #prompt { width: 60; height: auto; padding: 1 2; border: thick $warning; background: $surface; }
    Prompt { align: center middle; }
    #prompt Horizontal { height: auto; }
    """

    def __init__(self, reactor, server, account="", downloads=".", ftp_port=2121):
        super().__init__()
        self.reactor = reactor
        self.server, self.account, self.downloads = server, account, downloads
        self.ftp_port = ftp_port
        self.client = None

    def on_mount(self):
        self.push_screen(LoginScreen(self.server, self.account))

    def log_in(self, host, port, account, password, register_first):
        """Fires once logged in, with the chat screen shown."""
        from twisted.internet import defer

        @defer.inlineCallbacks
        def go():
            if register_first:
                yield register(self.reactor, host, port, account, password)
            client = NeoChatClient(self.reactor, host, port, account, password, ftp_port=self.ftp_port)
            try:
                yield client.start()
            except BaseException:
                yield client.stop()
                raise
            self.client = client
            on_app(self, self.switch_screen)(ChatScreen(client, self.downloads))

        return go()

    def on_reactor_call(self, call):
        call.run()

    async def action_quit(self):
        if self.client is not None:
            await self.client.stop().asFuture(asyncio.get_running_loop())
        self.exit()


def run(options):
    """Run the terminal client until it quits (the asyncio reactor is installed)."""
    from twisted.internet import defer, reactor

    app = NeoChatApp(reactor, options.server, options.account, options.downloads, options.ftp_port)

    def start():
        done = defer.Deferred.fromFuture(asyncio.ensure_future(app.run_async()))
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return app.return_code or 0
