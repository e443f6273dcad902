"""Friends, groups, history and profiles: every operation in both dialects.

JSON clients log in with ``acks`` so that each chat message gets a reply, as
it always does in the header dialect."""

import pytest_twisted
from twisted.internet import defer


def log_in(server, *names, dialect):
    return server.logged_in(*names, dialect=dialect, **({"acks": True} if dialect == "json" else {}))


@defer.inlineCallbacks
def log_in_again(server, name, dialect):
    client = yield server.client(dialect)
    if dialect == "json":
        yield client.request({"message_type": "login", "username": name, "password": "secret"})
    else:
        yield client.request({"message_type": "login", "user_account": name, "user_password": "secret"})
    return client


@pytest_twisted.inlineCallbacks
def test_friend_request_accept_list_and_remove(server, dialect):
    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    ok, reply = yield alice.op("friend_request", friend="bob")
    assert ok and reply["state"] == "requested"
    notice = yield bob.next("friend_request")
    assert notice["friend"] == "alice"
    ok, lists = yield bob.op("friend_list")
    assert ok and lists["incoming"] == ["alice"] and lists["friends"] == []
    ok, _ = yield bob.op("friend_accept", friend="alice")
    assert ok
    notice = yield alice.next("friend_accept")
    assert notice["friend"] == "bob"
    ok, lists = yield alice.op("friend_list")
    assert lists["friends"] == ["bob"] and lists["online"] == ["bob"]
    ok, _ = yield alice.op("friend_remove", friend="bob")
    assert ok
    yield bob.next("friend_remove")
    ok, lists = yield bob.op("friend_list")
    assert lists == {**lists, "friends": [], "incoming": [], "outgoing": []}


@pytest_twisted.inlineCallbacks
def test_friend_reject_and_errors(server, dialect):
    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    yield alice.op("friend_request", friend="bob")
    ok, _ = yield bob.op("friend_reject", friend="alice")
    assert ok
    yield alice.next("friend_reject")
    for op, friend, reason in [
        ("friend_accept", "alice", "no friend request"),
        ("friend_request", "ghost", "unknown account"),
        ("friend_request", "bob", "that is your own account"),
        ("friend_remove", "alice", "not a friend"),
    ]:
        ok, reply = yield bob.op(op, friend=friend)
        assert not ok and reply["reason"] == reason, (op, reply)


@pytest_twisted.inlineCallbacks
def test_friends_see_each_other_come_and_go(server, dialect):
    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    yield alice.op("friend_request", friend="bob")
    yield bob.op("friend_accept", friend="alice")
    yield bob.close()
    notice = yield alice.next("friend_offline")
    assert notice["friend"] == "bob"
    yield log_in_again(server, "bob", dialect)
    notice = yield alice.next("friend_online")
    assert notice["friend"] == "bob"


@pytest_twisted.inlineCallbacks
def test_friends_only_server_refuses_strangers(server, dialect):
    server.chat.friends_only = True
    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    reply = yield send_text(alice, "alice", "bob", "hi", dialect)
    assert failed(reply, "not a friend")
    yield alice.op("friend_request", friend="bob")
    yield bob.op("friend_accept", friend="alice")
    reply = yield send_text(alice, "alice", "bob", "hi friend", dialect)
    assert not failed(reply)
    message = yield bob.next(message_type(dialect))
    assert content(message) == "hi friend"


def message_type(dialect):
    return "word" if dialect == "json" else "text"


def content(message):
    return message.get("content", message.get("text"))


def failed(reply, reason=None):
    bad = reply.get("content") == "fail" or reply.get("stat", "200") != "200"
    return bad and (reason is None or reply["reason"] == reason)


def send_text(client, sender, to, text, dialect, group=False):
    """Send a chat message and wait for its reply."""
    if dialect == "json":
        return client.request({"message_type": "word", "chat_type": "normal" if group else "private",
                               "send_user": sender, "rece_user": to, "content": text})
    where = {"group_id": to} if group else {"friends": to}
    return client.request({"message_type": "text", "user_account": sender, "text": text, **where})


@pytest_twisted.inlineCallbacks
def test_group_roles_membership_and_chat(server, dialect):
    owner, admin, member, outsider = yield log_in(server, "owner", "admin", "member", "outsider", dialect=dialect)
    ok, reply = yield owner.op("group_create", group_id="g1", introduction="our room")
    assert ok and reply["permissions"] == "creator"
    ok, reply = yield outsider.op("group_create", group_id="g1")
    assert not ok and reply["reason"] == "group exists"
    ok, _ = yield owner.op("group_invite", group_id="g1", member="admin")
    assert ok
    ok, _ = yield admin.op("group_join", group_id="g1")
    assert not ok
    yield member.op("group_join", group_id="g1")
    ok, _ = yield owner.op("group_promote", group_id="g1", member="admin")
    assert ok

    # Posting reaches every other member, not outsiders.
    reply = yield send_text(member, "member", "g1", "hello group", dialect, group=True)
    assert not failed(reply)
    for client in (owner, admin):
        message = yield client.next(message_type(dialect))
        assert content(message) == "hello group"
    reply = yield send_text(outsider, "outsider", "g1", "let me in", dialect, group=True)
    assert failed(reply, "not a member")

    # Powers by role.
    ok, reply = yield member.op("group_remove", group_id="g1", member="admin")
    assert not ok and reply["reason"] == "needs role: creator or admin"
    ok, reply = yield admin.op("group_promote", group_id="g1", member="member")
    assert not ok and reply["reason"] == "needs role: creator"
    ok, reply = yield outsider.op("get_old_message", group_id="g1")
    assert not ok and reply["reason"] == "not a member"
    ok, info = yield outsider.op("group_info", group_id="g1")
    assert ok and info["founder"] == "owner" and "members" not in info
    ok, info = yield member.op("group_info", group_id="g1")
    roles = {m["user_account"]: m["permissions"] for m in info["members"]}
    assert roles == {"owner": "creator", "admin": "admin", "member": "member"}

    ok, _ = yield admin.op("group_remove", group_id="g1", member="member")
    assert ok
    yield member.next("group_remove")
    ok, reply = yield owner.op("group_leave", group_id="g1")
    assert not ok and reply["reason"] == "the creator must transfer or dissolve the group"
    ok, reply = yield owner.op("group_transfer", group_id="g1", member="admin")
    assert ok and reply["founder"] == "admin"
    ok, _ = yield owner.op("group_leave", group_id="g1")
    assert ok
    ok, groups = yield admin.op("group_list")
    assert groups["groups"] == [{"group_id": "g1", "permissions": "creator"}]
    ok, _ = yield admin.op("group_dissolve", group_id="g1")
    assert ok
    ok, reply = yield admin.op("group_info", group_id="g1")
    assert not ok and reply["reason"] == "unknown group"


@pytest_twisted.inlineCallbacks
def test_offline_group_member_gets_messages_at_login(server, dialect):
    owner, member = yield log_in(server, "owner", "member", dialect=dialect)
    yield owner.op("group_create", group_id="g2")
    yield member.op("group_join", group_id="g2")
    yield member.close()
    for n in range(3):
        yield send_text(owner, "owner", "g2", f"while you were out {n}", dialect, group=True)
    member = yield log_in_again(server, "member", dialect)
    for n in range(3):
        message = yield member.next(message_type(dialect))
        assert content(message) == f"while you were out {n}"


@pytest_twisted.inlineCallbacks
def test_history_pages_back_newest_first(server, dialect):
    alice, bob, eve = yield log_in(server, "alice", "bob", "eve", dialect=dialect)
    clients = {"alice": alice, "bob": bob}
    for n in range(5):
        sender, receiver = ("alice", "bob") if n % 2 else ("bob", "alice")
        yield send_text(clients[sender], sender, receiver, f"m{n}", dialect)
    ok, page = yield alice.op("get_old_message", with_user="bob", count=2)
    assert ok and [content(m) for m in page["messages"]] == ["m4", "m3"]
    ok, page = yield alice.op("get_old_message", with_user="bob", count=3, before_id=page["messages"][-1]["id"])
    assert [content(m) for m in page["messages"]] == ["m2", "m1", "m0"]
    # A stranger reading "with bob" only ever sees their own conversation with bob.
    ok, page = yield eve.op("get_old_message", with_user="bob")
    assert ok and page["messages"] == []
    ok, reply = yield alice.op("get_old_message", with_user="bob", count=1000)
    assert not ok and reply["reason"] == "count must be 1 to 100"


@pytest_twisted.inlineCallbacks
def test_profiles_read_and_edit(server, dialect):
    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    ok, profile = yield alice.op("set_user_info", user_name="Alice", sex="female", birthday="1990-05-17",
                                 address="1 Main St")
    assert ok and profile["user_name"] == "Alice"
    ok, profile = yield bob.op("get_user_info", account="alice")
    assert ok and (profile["user_name"], profile["sex"], profile["birthday"]) == ("Alice", "female", "1990-05-17")
    assert "password_hash" not in profile
    ok, me = yield bob.op("get_current_user")
    assert ok and me["user_account"] == "bob"
    ok, reply = yield alice.op("set_user_info", sex="robot")
    assert not ok and reply["reason"] == "sex must be male, female or neutral"
    ok, reply = yield alice.op("get_user_info", account="ghost")
    assert not ok and reply["reason"] == "unknown account"


@pytest_twisted.inlineCallbacks
def test_deleting_an_account_removes_it_with_its_files(server, dialect):
    import ftplib
    import io

    from twisted.internet import threads

    alice, bob = yield log_in(server, "alice", "bob", dialect=dialect)
    yield alice.op("group_create", group_id="alices")
    ftp_port = server.root.ftp_service.address[1]

    def upload():
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", ftp_port, timeout=10)
            client.login("alice", "secret")
            return client.storbinary("STOR notes.txt", io.BytesIO(b"mine")).rsplit("file: ", 1)[1].strip()

    name = yield threads.deferToThread(upload)
    ok, reply = yield alice.op("delete_account", password="wrong")
    assert not ok and reply["reason"] == "wrong account or password"
    ok, _ = yield alice.op("delete_account", password="secret")
    assert ok
    notice = yield bob.next("leave_message")
    assert notice.get("username", notice.get("user_account")) == "alice"
    assert not (server.root.files.directory / name).exists()
    assert (yield server.root.store.files.get(name)) is None
    ok, reply = yield bob.op("get_user_info", account="alice")
    assert not ok and reply["reason"] == "unknown account"
    ok, reply = yield bob.op("group_info", group_id="alices")
    assert not ok and reply["reason"] == "unknown group"
