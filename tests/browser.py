"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's
sync API in a thread of its own: its objects may only be used from the
thread that made them, and the reactor runs in the test's thread.
``BrowserThread.run(function)`` calls ``function(browser)`` there and
returns a Deferred of the result."""

import os
import queue
import threading
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.python.failure import Failure

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "tmp" / "artifacts"
TIMEOUT_MS = 15000


def require_chromium():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing: scripts/test installs it")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


class BrowserThread:
    def __init__(self):
        self._jobs = queue.Queue()
        self._started = defer.Deferred()
        self.stopped = defer.Deferred()
        threading.Thread(target=self._loop, name="browser", daemon=True).start()

    @classmethod
    def start(cls):
        browser = cls()
        return browser._started.addCallback(lambda _: browser)

    def _loop(self):
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                reactor.callFromThread(self._started.callback, None)
                while (job := self._jobs.get()) is not None:
                    function, done = job
                    try:
                        result = function(browser)
                    except BaseException:
                        reactor.callFromThread(done.errback, Failure())
                    else:
                        reactor.callFromThread(done.callback, result)
                browser.close()
        except BaseException:
            failure = Failure()
            reactor.callFromThread(
                lambda: self._started.errback(failure) if not self._started.called else None
            )
        reactor.callFromThread(self.stopped.callback, None)

    def run(self, function, *args):
        done = defer.Deferred()
        self._jobs.put((lambda browser: function(browser, *args), done))
        return done

    def stop(self):
        self._jobs.put(None)
        return self.stopped


def new_page(browser, base_url, width=1000, height=700):
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height},
                                  accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/")
    return page


def screenshot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
