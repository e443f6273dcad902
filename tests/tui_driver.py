"""Runs the terminal client headless under textual's Pilot, on Twisted's
asyncio reactor, in a process of its own (pytest-twisted owns the default
reactor in the test process).  Reads JSON commands on stdin, answers each
with the screen's text as one JSON line on stdout.  tests/test_client_tui.py
drives it.

Commands: {"type": "text"} inserts text at the focused input, {"press":
[keys]} presses keys, {"click": "#id"} clicks a widget, {"pause": seconds}
lets the network work; every command is answered with {"screen": "..."}.
"""

import asyncio
import json
import os
import sys

from twisted.internet import asyncioreactor

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)

from twisted.internet import defer, reactor  # noqa: E402  (after the reactor is installed)

from neochat.client.tui import NeoChatApp  # noqa: E402


def screen_text(app):
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def drive(port, downloads, ftp_port):
    app = NeoChatApp(reactor, ("127.0.0.1", port), downloads=downloads, ftp_port=ftp_port)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with app.run_test(size=(100, 24)) as pilot:
        while True:
            line = await reader.readline()
            if not line:
                break
            command = json.loads(line)
            if "type" in command:
                app.focused.insert_text_at_cursor(command["type"])
            if "press" in command:
                await pilot.press(*command["press"])
            if "click" in command:
                await pilot.click(command["click"])
            await pilot.pause(command.get("pause", 0))
            os.write(1, json.dumps({"screen": screen_text(app)}).encode() + b"\n")
            if not app.is_running:
                break


def main():
    port, downloads, ftp_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    outcome = []
    done = defer.Deferred.fromFuture(asyncio.ensure_future(drive(port, downloads, ftp_port)))
    done.addErrback(lambda failure: outcome.append(failure) or failure.printTraceback())
    done.addBoth(lambda _: reactor.stop())
    reactor.run(installSignalHandlers=False)
    sys.exit(1 if outcome else 0)


main()
