"""From Twisted callbacks to textual: a Deferred's callback or a pushed
message arrives from the reactor, outside textual's context (which widget
methods need), so it is posted to the app as a message and run there, in
order, on the same loop."""

from textual.message import Message


class ReactorCall(Message):
    """Handled by the app's ``on_reactor_call``, which runs it."""

    def __init__(self, function, args):
        super().__init__()
        self.function, self.args = function, args

    def run(self):
        self.function(*self.args)


def on_app(app, function):
    """A callable for Deferreds and subscriptions that runs ``function`` in
    ``app``; capture ``app`` while in textual's context."""

    def post(*args):
        app.post_message(ReactorCall(function, args))

    return post
