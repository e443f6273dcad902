"""The web client in headless Chromium against a real server: two people
register, chat both ways, in a group, share a file; a browser and a TCP
JSON-dialect client talk to each other.  Screenshots go to tmp/artifacts."""

import hashlib

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from tests.browser import BrowserThread, new_page, require_chromium, screenshot


@pytest.fixture
def db_url(tmp_path):
    """The browser tests run on SQLite only: the store is the same as in
    the gateway tests, which run on both databases."""
    return f"sqlite:{tmp_path / 'test.sqlite'}"


@pytest_twisted.async_yield_fixture
async def browser():
    require_chromium()
    thread = await BrowserThread.start()
    yield thread
    await thread.stop()


def register(page, account, password="secret pw"):
    page.fill("#login-user", account)
    page.fill("#login-pass", password)
    page.click("#register-btn")
    page.wait_for_selector("#chat-view:not([hidden])")
    page.wait_for_selector("#status:text('online')")


def open_chat(page, kind, name):
    page.fill("#add-name", name)
    page.select_option("#add-kind", kind)
    page.click("#add-form button[type=submit]")


def say(page, text):
    page.fill("#text", text)
    page.click("#send-btn")
    page.wait_for_selector(f"#message-list li.mine:not(.pending):has-text('{text}')")


def sees(page, text):
    page.wait_for_selector(f"#message-list li:has-text('{text}')")


def two_people_chat(browser, base_url, upload_path):
    alice, bob = new_page(browser, base_url), new_page(browser, base_url)
    register(alice, "alice")
    register(bob, "bob")
    # Private, both ways, with the unread count on bob's side.
    open_chat(alice, "chat", "bob")
    say(alice, "你好 bob 👋")
    bob.wait_for_selector("#contacts li[data-key='u:alice'] .badge:text('1')")
    bob.click("#contacts li[data-key='u:alice']")
    sees(bob, "你好 bob 👋")
    bob.wait_for_selector("#contacts li[data-key='u:alice'] .badge:empty", state="attached")  # read
    say(bob, "hi alice, 收到")
    sees(alice, "hi alice, 收到")
    # A friend request, accepted.
    open_chat(alice, "friend", "bob")
    bob.click("#requests li:has-text('alice') button:text('Accept')")
    alice.wait_for_selector("#contacts li[data-key='u:bob'] .name.friend")
    # A group: alice creates it, bob joins, both post.
    open_chat(alice, "create", "dev")
    open_chat(bob, "join", "dev")
    say(bob, "bob here in #dev")
    sees(alice, "bob here in #dev")
    say(alice, "welcome to dev 🎉")
    sees(bob, "welcome to dev 🎉")
    alice.click("#members-btn")
    alice.click("#members li:has-text('bob (member)') button:text('Promote')")
    alice.wait_for_selector("#members li:has-text('bob (admin)') button:text('Demote')")
    # A file to the group, with the progress bar, downloaded by bob.
    alice.set_input_files("#file-input", upload_path)
    link = bob.wait_for_selector("#message-list a.file:has-text('notes 笔记.bin')")
    with bob.expect_download() as download:
        link.click()
    saved = download.value.path()
    screenshot(alice, "alice-group")
    screenshot(bob, "bob-group")
    # Logged in afresh, bob scrolls back through the private chat's history.
    bob.reload()
    bob.fill("#login-user", "bob")
    bob.fill("#login-pass", "secret pw")
    bob.click("#login-btn")
    bob.click("#contacts li[data-key='u:alice']")
    sees(bob, "你好 bob 👋")
    sees(bob, "hi alice, 收到")
    with open(saved, "rb") as file:
        return download.value.suggested_filename, hashlib.sha256(file.read()).hexdigest()


@pytest_twisted.inlineCallbacks
def test_two_browsers_chat_privately_and_in_a_group_and_share_a_file(server, browser, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    upload_path = tmp_path / "notes 笔记.bin"
    upload_path.write_bytes(data)
    name, digest = yield browser.run(two_people_chat, f"http://127.0.0.1:{server.http_port}", str(upload_path))
    assert name == "notes 笔记.bin"
    assert digest == hashlib.sha256(data).hexdigest()


def browser_user(browser, base_url):
    page = new_page(browser, base_url, width=390, height=760)  # a phone
    register(page, "dave")
    open_chat(page, "chat", "carol")
    say(page, "hello carol from the browser ☕")
    return page


def browser_reads(browser, page, text):
    sees(page, text)
    screenshot(page, "phone-dave")


@pytest_twisted.inlineCallbacks
def test_browser_and_tcp_client_talk(server, browser):
    carol, = yield server.logged_in("carol", acks=True)
    page = yield browser.run(browser_user, f"http://127.0.0.1:{server.http_port}")
    word = yield carol.next("word")
    assert (word["send_user"], word["content"]) == ("dave", "hello carol from the browser ☕")
    carol.send({"message_type": "ack", "id": [word["id"]]})
    carol.send({"message_type": "word", "chat_type": "private", "send_user": "carol",
                "rece_user": "dave", "content": "hi dave from TCP 🐍", "client_id": "t-1"})
    yield carol.next("word", reply=True)
    yield browser.run(browser_reads, page, "hi dave from TCP 🐍")


def drop_seen(browser, page):
    page.wait_for_selector("#conn-banner")
    page.fill("#text", "typed while offline ✈️")
    page.click("#send-btn")
    page.wait_for_selector("#message-list li.pending:has-text('typed while offline ✈️')")


def back_online(browser, page):
    page.wait_for_selector("#conn-banner", state="hidden")
    sees(page, "while you were away 🌙")
    page.wait_for_selector("#message-list li.mine:not(.pending):has-text('typed while offline ✈️')")
    say(page, "marker after the reconnect")
    screenshot(page, "after-reconnect")
    return [page.locator(f"#message-list li:has-text('{text}')").count()
            for text in ("while you were away 🌙", "typed while offline ✈️")]


@pytest_twisted.inlineCallbacks
def test_a_network_drop_loses_and_doubles_nothing(server, browser):
    web = server.root.web_service
    port = server.http_port
    carol, = yield server.logged_in("carol", acks=True)
    page = yield browser.run(browser_user, f"http://127.0.0.1:{port}")
    word = yield carol.next("word")
    carol.send({"message_type": "ack", "id": [word["id"]]})
    # The network goes: the listener stops (so reconnecting fails for a
    # while) and the browser's connection is cut without a close frame.
    yield web.ports[0].stopListening()
    for connection in list(web.site.gateway.connections):
        connection.transport.abortConnection()
    yield browser.run(drop_seen, page)
    carol.send({"message_type": "word", "chat_type": "private", "send_user": "carol",
                "rece_user": "dave", "content": "while you were away 🌙", "client_id": "t-2"})
    yield carol.next("word", reply=True)
    web.ports[0] = yield serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1").listen(web.site)
    counts = yield browser.run(back_online, page)
    assert counts == [1, 1]
    words = []
    while not words or words[-1] != "marker after the reconnect":
        words.append((yield carol.next("word"))["content"])
    assert words == ["typed while offline ✈️", "marker after the reconnect"]


def scroll_back(browser, base_url):
    page = new_page(browser, base_url)
    page.fill("#login-user", "erin")
    page.fill("#login-pass", "secret")
    page.click("#login-btn")
    page.click("#contacts li[data-key='u:frank']")
    page.wait_for_selector("#message-list li:has-text('old 34')")
    first_page = page.locator("#message-list li").count()
    page.click("#older-btn")
    page.wait_for_selector("#message-list li:has-text('old 0')")
    return first_page, page.locator("#message-list li").count(), page.is_hidden("#older-btn")


@pytest_twisted.inlineCallbacks
def test_history_scrolls_back_page_by_page(server, browser):
    erin, frank = yield server.logged_in("erin", "frank")
    for n in range(35):
        frank.send({"message_type": "word", "chat_type": "private", "send_user": "frank",
                    "rece_user": "erin", "content": f"old {n}"})
    for _ in range(35):
        yield erin.next("word")
    erin.close()
    counts = yield browser.run(scroll_back, f"http://127.0.0.1:{server.http_port}")
    assert counts == (30, 35, True)


def accepts_and_saves(browser, base_url):
    page = new_page(browser, base_url)
    register(page, "dave")
    return page


def offer_answered(browser, page):
    page.wait_for_selector("#contacts li[data-key='u:carol'] .badge:text('2')")
    page.click("#contacts li[data-key='u:carol']")
    page.click("#message-list li.offer:has-text('refused.txt') button:text('Reject')")
    page.wait_for_selector("#message-list li.offer:has-text('refused.txt') .note:text('rejected')")
    page.evaluate("""() => {  // counts the renders that show a progress bar
      window.progressShown = 0;
      new MutationObserver(() => { window.progressShown += !!document.querySelector("#message-list progress"); })
        .observe(document.getElementById("message-list"), { childList: true, subtree: true });
    }""")
    page.click("#message-list li.offer:has-text('report 报告.bin') button:text('Accept')")
    save = page.wait_for_selector("#message-list li.offer:has-text('report 报告.bin') a.save")
    screenshot(page, "in-band-offer")
    with page.expect_download() as download:
        save.click()
    with open(download.value.path(), "rb") as file:
        return download.value.suggested_filename, file.read(), page.evaluate("window.progressShown")


@pytest_twisted.inlineCallbacks
def test_a_browser_accepts_an_in_band_file_from_a_tcp_client(server, browser):
    data = bytes(range(256)) * 1200  # 300 KiB: many binary messages, a visible progress bar
    carol, = yield server.logged_in("carol", acks=True)
    page = yield browser.run(accepts_and_saves, f"http://127.0.0.1:{server.http_port}")
    for name, payload in (("refused.txt", b"no thanks"), ("report 报告.bin", data)):
        carol.send({"message_type": "file", "send_user": "carol", "rece_user": "dave",
                    "file_name": name, "file_length": len(payload)})
        carol.send_raw(payload)
        assert (yield carol.next("file", reply=True))["content"] == "success"
    name, saved, progress_shown = yield browser.run(offer_answered, page)
    assert name == "report 报告.bin" and saved == data
    assert progress_shown >= 1
    rejected = yield carol.next("reject")
    assert (rejected["file_name"], rejected["rece_user"]) == ("refused.txt", "dave")
