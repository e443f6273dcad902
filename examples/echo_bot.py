#!/usr/bin/env python3
"""An echo bot for the NeoChat plugin daemon, in plain Python (stdlib only).

Start the daemon, then the bot:

    NEOCHAT_PASSWORD=secret neochat-client daemon --account echo --register &
    python3 examples/echo_bot.py            # or: --url http://127.0.0.1:7080 --token-file PATH

It long-polls GET /messages and answers every private message with
"echo: <text>" through POST /send.  See docs/plugin-api.md.
"""

import argparse
import json
import os
import urllib.request


def call(url, token, method, path, body=None):
    request = urllib.request.Request(
        url + path, method=method,
        data=None if body is None else json.dumps(body).encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=70) as response:
        return json.load(response)


def main():
    default_token = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"),
                                 "neochat", "token")
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--url", default="http://127.0.0.1:7080")
    options.add_argument("--token-file", default=default_token)
    options.add_argument("--count", type=int, default=0, help="stop after this many answers (0: never)")
    args = options.parse_args()
    with open(args.token_file) as token_file:
        token = token_file.read().strip()
    me = call(args.url, token, "GET", "/me")["user_account"]
    print(f"echo bot running as {me}", flush=True)
    answered = 0
    while not args.count or answered < args.count:
        for message in call(args.url, token, "GET", "/messages?wait=30")["messages"]:
            if message.get("message_type") == "word" and message.get("chat_type") == "private":
                call(args.url, token, "POST", "/send",
                     {"to": message["send_user"], "content": "echo: " + message["content"]})
                answered += 1


if __name__ == "__main__":
    main()
