"""Slash commands of the terminal client's chat screen (a mixin of
``ChatScreen``): ``/msg``, ``/add``, ``/join``, ``/file``, ``/call``,
``/accept`` and the rest.  Each starts a request and returns; the result
shows in the status line when it comes."""

import os
import time

from neochat.client.conversations import LOBBY

HELP = (
    "/msg NAME · /group NAME · /lobby · /add NAME (friend request) · /join GROUP · /create GROUP · "
    "/leave · /members · /invite NAME · /kick NAME · /promote NAME · /demote NAME · /file PATH · /share PATH · /get NAME · "
    "/call [NAME] [WAV] · /hangup · /accept · /reject · /history · /quit"
)
GROUP_ACTIONS = {"invite": "invite", "kick": "remove", "promote": "promote", "demote": "demote"}


class Commands:
    def command_help(self):
        self.action_help()

    def command_quit(self):
        self.app.call_later(self.app.action_quit)

    def command_msg(self, name):
        self.open(("private", name))

    def command_group(self, name):
        self.open(("group", name))

    def command_lobby(self):
        self.open(LOBBY)

    def command_history(self):
        self.action_history()

    def command_add(self, *words):
        name = words[-1] if words else None  # "/add bob" or "/add friend bob"
        if name is None:
            raise TypeError
        self._run(self.client.friend("request", name), f"friend request sent to {name}")

    def command_join(self, group_id):
        self._run(self.client.group("join", group_id), f"joined #{group_id}", opened=("group", group_id))

    def command_create(self, group_id, *introduction):
        self._run(self.client.group("create", group_id, introduction=" ".join(introduction)),
                  f"created #{group_id}", opened=("group", group_id))

    def command_leave(self):
        kind, name = self.state.current
        if kind != "group":
            self.say("open a group first", error=True)
            return
        self._run(self.client.group("leave", name), f"left #{name}")

    def command_members(self):
        """The open group's card: its introduction and members with roles."""
        kind, name = self.state.current
        if kind != "group":
            self.say("open a group first", error=True)
            return
        self.when(self.client.group("info", name), self._show_members, "members")

    def _show_members(self, info):
        members = ", ".join(f"{m['user_account']} ({m['permissions']})" for m in info.get("members", []))
        self.say(f"#{info['group_id']} {info['introduction']} · {info['member_count']} members: "
                 f"{members or 'join to see them'}")

    def _group_action(self, command, member):
        kind, name = self.state.current
        if kind != "group":
            self.say("open a group first", error=True)
            return
        self._run(self.client.group(GROUP_ACTIONS[command], name, member), f"{command}: {member} in #{name}")

    def command_invite(self, member):
        self._group_action("invite", member)

    def command_kick(self, member):
        self._group_action("kick", member)

    def command_promote(self, member):
        self._group_action("promote", member)

    def command_demote(self, member):
        self._group_action("demote", member)

    def command_file(self, path):
        kind, name = self.state.current
        if kind != "private":
            self.say("files go to one person: open a private chat first", error=True)
            return
        if not os.path.isfile(path):
            self.say(f"no such file: {path}", error=True)
            return
        self.say(f"sending {os.path.basename(path)}…")
        self.when(self.client.send_file(name, path, self.ui(self.progress)),
                  lambda receipt: self._sent_file(name, receipt), "file", finally_=self.transfer_done)

    def _sent_file(self, name, receipt):
        self.add({**receipt, "message_type": "file", "send_user": self.client.account, "rece_user": name})
        self.say(f"sent {receipt['file_name']}")

    def command_share(self, path):
        """Seed 002's way: upload over FTP and send ``<file>NAME</file>`` to the
        open private chat or group."""
        kind, name = self.state.current
        if kind == "lobby" or not os.path.isfile(path):
            self.say("open a chat or group, and give an existing file", error=True)
            return
        self.say(f"uploading {os.path.basename(path)}…")
        sharing = self.client.share_file(name, path, group=kind == "group", progress=self.ui(self.progress))
        self.when(sharing, lambda shared: self.say(f"shared {shared[0]}"), "share", finally_=self.transfer_done)

    def command_get(self, stored_name):
        """Download a file a message referred to (``<file>NAME</file>``) over FTP."""
        os.makedirs(self.downloads, exist_ok=True)
        path = os.path.join(self.downloads, os.path.basename(stored_name))
        self.say(f"downloading {stored_name}…")
        self.when(self.client.ftp.download(stored_name, path, self.ui(self.progress)),
                  self.saved, "get", finally_=self.transfer_done)

    def command_call(self, name=None, wav=None):
        name = name or (self.state.current[1] if self.state.current[0] == "private" else None)
        if name is None:
            raise TypeError
        record = os.path.join(self.downloads, f"call-{name}-{int(time.time())}.wav")
        os.makedirs(self.downloads, exist_ok=True)
        try:
            self.call = call = self.client.calls.place(name, play=wav, record=record)
        except (ValueError, OSError) as error:
            self.say(str(error), error=True)
            return
        self.say(f"calling {name}… · /hangup")
        self.when(call.answered, lambda answered: answered and self.say(f"in a call with {name} · /hangup"), "call")
        call.ended.addCallback(self.ui(lambda reason: self._call_ended(call, reason)))

    def command_hangup(self):
        if self.call is None:
            self.say("no call", error=True)
            return
        self.client.calls.hang_up(self.call)

    def command_accept(self):
        self._answer(True)

    def command_reject(self):
        self._answer(False)

    def _answer(self, accept):
        """The newest thing waiting for an answer: a call, a file, a friend."""
        if self.ringing is not None:
            self.answer_call(self.ringing, accept)
        elif self.offers:
            self.answer_offer(self.offers[-1], accept)
        elif self.state.requests:
            name = self.state.requests.pop()
            self._run(self.client.friend("accept" if accept else "reject", name),
                      f"{'accepted' if accept else 'rejected'} {name}")
        else:
            self.say("nothing to answer", error=True)

    def _run(self, deferred, done, opened=None):
        def succeeded(_):
            self.say(done)
            self.refresh_lists()
            if opened is not None:
                self.open(opened)

        self.when(deferred, succeeded, done.split(":")[0])

