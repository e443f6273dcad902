"""The chat screen of the terminal client: contacts with presence and unread
counts, the open conversation, an input line for messages and slash
commands, a status line where errors show, and prompts for incoming files
and calls.  Every network call returns a Deferred; the screen never waits."""

import os
import shlex
import time

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, ListItem, ListView, ProgressBar, RichLog, Static
from twisted.python.failure import Failure

from neochat.client.bridge import on_app
from neochat.client.commands import HELP, Commands
from neochat.client.connection import RequestFailed
from neochat.client.conversations import Conversations, title_of
from neochat.client.ftp import file_references


def when(message):
    stamp = message.get("time")
    return time.strftime("%H:%M", time.localtime(stamp / 1000)) if stamp else "--:--"


def size_text(length):
    if length < 1024:
        return f"{length} B"
    if length < 1 << 20:
        return f"{length / 1024:.1f} KiB"
    return f"{length / (1 << 20):.1f} MiB"


class Prompt(ModalScreen):
    """A yes/no question (an incoming file or call); dismisses with True/False."""

    BINDINGS = [Binding("a", "answer(True)", "Accept"), Binding("r", "answer(False)", "Reject")]

    def __init__(self, question):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Label(self.question, id="prompt-question")
            with Horizontal():
                yield Button("Accept (a)", variant="success", id="accept")
                yield Button("Reject (r)", variant="error", id="reject")
        yield Footer()

    def on_button_pressed(self, event):
        self.dismiss(event.button.id == "accept")

    def action_answer(self, accept):
        self.dismiss(accept)


class ChatScreen(Commands, Screen):
    BINDINGS = [
        Binding("ctrl+n", "switch(1)", "Next chat"),
        Binding("ctrl+p", "switch(-1)", "Previous chat"),
        Binding("f2", "history", "Older messages"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self, client, downloads):
        super().__init__()
        self.client = client
        self.downloads = downloads
        self.state = Conversations(client.account)
        self.offers = []  # file offers not answered yet, newest last
        self.ringing = None  # an incoming call not answered yet
        self.ringing_prompt = None  # and the question about it
        self.call = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ListView(id="contacts")
            with Vertical():
                yield Label("", id="title")
                yield RichLog(id="log", wrap=True, markup=False)
                yield ProgressBar(id="transfer", show_eta=False)
                yield Input(placeholder="message, or /help", id="input")
                yield Static("", id="status")
        yield Footer()

    def on_mount(self):
        self.query_one("#transfer").display = False
        self.ui = lambda function: on_app(self.app, function)  # see neochat.client.bridge
        self.client.subscribe(self.ui(self.pushed))
        self.client.calls.on_call = self.ui(self.incoming_call)
        self.client.watch_connection(self.ui(self.connection_changed))
        for message in self.client.get_message():  # what came with the login
            self.pushed(message)
        self.state.online = set(self.client.online)
        self.refresh_lists()
        self.show_conversation()
        self.query_one("#input", Input).focus()
        self.say(f"logged in as {self.client.account} · F1 for commands")

    def connection_changed(self, state):
        if state == "reconnecting":
            self.say("connection lost: reconnecting… (what you type is sent once back)", error=True)
        else:
            self.say("reconnected")
            self.refresh_lists()

    # -- rendering -----------------------------------------------------------

    def say(self, text, error=False):
        status = self.query_one("#status", Static)
        status.update(Text(text, style="bold red" if error else "green"))

    def failed(self, failure, what):
        reason = failure.value.reason if failure.check(RequestFailed) else str(failure.value)
        self.say(f"{what}: {reason}", error=True)

    def refresh_contacts(self):
        contacts = self.query_one("#contacts", ListView)
        contacts.clear()
        for key, label, online, unread in self.state.contacts():
            dot = "[green]●[/]" if online else "[dim]○[/]" if key[0] == "private" else " "
            badge = f" [bold black on yellow] {unread} [/]" if unread else ""
            mark = "» " if key == self.state.current else "  "
            item = ListItem(Label(f"{mark}{dot} {escape(label)}{badge}"))
            item.conversation = key
            contacts.append(item)

    def show_conversation(self):
        key = self.state.current
        self.query_one("#title", Label).update(f" {title_of(key)}")
        log = self.query_one("#log", RichLog)
        log.clear()
        for message in self.state.get(key).messages:
            log.write(self.line(message))
        self.refresh_contacts()

    def line(self, message):
        author = message.get("send_user", "")
        style = "bold cyan" if author == self.client.account else "bold magenta"
        text = Text.assemble((f"{when(message)} ", "dim"), (author, style), ": ")
        if message.get("message_type") == "file":
            text.append(f"📎 {message['file_name']} ({size_text(message['file_length'])})", "yellow")
        else:
            text.append(message.get("content", ""))
        return text

    def add(self, message):
        key = self.state.receive(message)
        if key is None:
            return
        if key == self.state.current:
            self.query_one("#log", RichLog).write(self.line(message))
        self.refresh_contacts()

    def refresh_lists(self):
        self.when(self.client.friend_list(), self._friends, "friends")
        self.when(self.client.group_list(), self._groups, "groups")

    def _friends(self, reply):
        self.state.friends = set(reply["friends"])
        self.state.requests = list(reply["incoming"])
        if self.state.requests:
            self.say(f"friend request from {', '.join(self.state.requests)}: /accept or /reject")
        self.refresh_contacts()

    def _groups(self, groups):
        self.state.groups = {group["group_id"] for group in groups}
        self.refresh_contacts()

    # -- pushes --------------------------------------------------------------

    def pushed(self, message):
        kind = message.get("message_type")
        if kind == "word" and "send_user" in message:
            self.add(message)
            for name in file_references(message.get("content")):
                self.say(f"{message['send_user']} shared {name}: /get {name}")
        elif kind == "file" and "send_user" in message:
            self.add(message)
            self.offers.append(message)
            self.app.push_screen(self._offer_prompt(message), lambda accept: self.answer_offer(message, accept))
        elif kind in ("update_online_user", "leave_message", "friend_online", "friend_offline"):
            self.state.online = set(self.client.online)
            self.refresh_contacts()
        elif kind and kind.startswith(("friend_", "group_")):
            self.refresh_lists()
            if kind == "friend_request":
                self.say(f"friend request from {message['friend']}: /accept or /reject")
        elif kind == "reject" and "rece_user" in message:
            self.say(f"{message['rece_user']} rejected {message['file_name']}", error=True)
        elif message.get("content") == "fail":
            self.say(f"{kind}: {message.get('reason')}", error=True)
        elif kind == "kicked":
            self.say("logged in elsewhere: this session was closed", error=True)

    def _offer_prompt(self, offer):
        return Prompt(f"{offer['send_user']} sends you {offer['file_name']} "
                      f"({size_text(offer['file_length'])}). Accept?")

    def incoming_call(self, call):
        self.ringing = call
        self.say(f"{call.caller} is calling: /accept or /reject")
        call.ended.addCallback(self.ui(lambda reason: self._call_ended(call, reason)))
        self.ringing_prompt = Prompt(f"📞 {call.caller} is calling. Answer?")
        self.app.push_screen(self.ringing_prompt, lambda accept: self.answer_call(call, accept))

    def _call_ended(self, call, reason):
        if self.ringing is call:
            self.ringing = None
            if self.ringing_prompt.is_current:  # the caller gave up: no question left
                self.ringing_prompt.dismiss(False)
        if self.call is call:
            self.call = None
        self.say(f"call with {call.peer} ended ({reason})")

    # -- answering -----------------------------------------------------------

    def answer_offer(self, offer, accept):
        if offer not in self.offers:
            return
        self.offers.remove(offer)
        if not accept:
            self.when(self.client.reject_file(offer), lambda _: None, "reject")
            self.say(f"rejected {offer['file_name']}")
            return
        os.makedirs(self.downloads, exist_ok=True)
        path = os.path.join(self.downloads, offer["file_name"])
        self.say(f"receiving {offer['file_name']}…")
        self.when(self.client.accept_file(offer, path, self.ui(self.progress)),
                  self.saved, "file", finally_=self.transfer_done)

    def answer_call(self, call, accept):
        if self.ringing is not call or call.state != "ringing":
            return
        self.ringing = None
        if accept:
            record = os.path.join(self.downloads, f"call-{call.caller}-{int(time.time())}.wav")
            os.makedirs(self.downloads, exist_ok=True)
            self.client.calls.answer(call, record=record)
            self.call = call
            self.say(f"in a call with {call.caller}; recording to {record} · /hangup")
        else:
            self.client.calls.reject(call)

    def progress(self, done, total):
        bar = self.query_one("#transfer", ProgressBar)
        bar.display = True
        bar.update(total=total or 1, progress=done)

    def saved(self, path):
        self.say(f"saved {os.path.basename(path)} in {os.path.dirname(path)}")

    def transfer_done(self):
        self.query_one("#transfer", ProgressBar).display = False

    # -- input ---------------------------------------------------------------

    def on_input_submitted(self, event):
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text.startswith("/"):
            try:
                words = shlex.split(text[1:])
            except ValueError as error:
                self.say(str(error), error=True)
                return
            command = getattr(self, f"command_{words[0] if words else ''}", None)
            if command is None:
                self.say(f"unknown command /{words[0] if words else ''} (F1: help)", error=True)
                return
            try:
                command(*words[1:])
            except TypeError:
                self.say(f"wrong arguments for /{words[0]} (F1: help)", error=True)
            return
        self.send(text)

    def send(self, text):
        kind, name = self.state.current
        sending = self.client.send_message(name or None, text, group=kind == "group")
        message = {"message_type": "word", "chat_type": "private" if kind == "private" else "normal",
                   "send_user": self.client.account, "rece_user": name, "content": text}
        self.when(sending, lambda receipt: self.add({**message, **receipt}), "not sent")

    def on_list_view_selected(self, event):
        self.open(event.item.conversation)

    def open(self, key):
        self.state.open(key)
        self.show_conversation()
        if not self.state.get(key).messages:
            self.action_history(quiet=True)

    def action_switch(self, step):
        self.open(self.state.neighbour(step))

    def action_help(self):
        self.say(HELP)

    def action_history(self, quiet=False):
        """Twenty older messages of the open conversation (``quiet``: when it
        is opened, without a word in the status line)."""
        key = self.state.current
        kind, name = key
        older = self.client.get_old_message(name or None, 20, group=kind == "group",
                                            before_id=self.state.get(key).oldest_id)
        self.when(older, lambda messages: self._history(key, messages, quiet), "history")

    def _history(self, key, messages, quiet):
        added = self.state.add_history(key, messages)
        if key == self.state.current:
            self.show_conversation()
        if not quiet:
            self.say(f"{added} older messages" if added else "no older messages")

    def when(self, deferred, succeeded, what, finally_=None):
        """Once ``deferred`` fires, ``succeeded(result)`` in the app, or the
        failure shown as ``what: reason``; then ``finally_()``."""
        def done(result):
            if isinstance(result, Failure):
                self.failed(result, what)
            else:
                succeeded(result)
            if finally_ is not None:
                finally_()

        deferred.addBoth(self.ui(done))

    def on_screen_resume(self):
        self.query_one("#input", Input).focus()
