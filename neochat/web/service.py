"""The web service: one twisted.web site per ``--http`` endpoint with the
chat page at ``/``, the WebSocket gateway at ``/ws`` and files at ``/files``."""

from pathlib import Path

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.web import server, static

from neochat.services.listening import ListeningService
from neochat.web.files import FilesResource, StreamingRequest
from neochat.web.gateway import GatewayFactory, Tokens

STATIC = Path(__file__).parent / "static"


class Page(static.File):
    """The static client, with headers that keep it to its own origin."""

    def render_GET(self, request):
        request.setHeader(b"content-security-policy",
                          b"default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return super().render_GET(request)


class WebSite(server.Site):
    requestFactory = StreamingRequest

    def __init__(self, chat, library, allowed_origins=(), counter=None, limits=None, clock=None):
        self.tokens = Tokens()
        self.library = library
        self.gateway = GatewayFactory(chat, self.tokens, allowed_origins, counter, limits, clock)
        root = Page(str(STATIC))
        root.putChild(b"ws", WebSocketResource(self.gateway))
        root.putChild(b"files", FilesResource(library, self.tokens))
        super().__init__(root)
        self.displayTracebacks = False


class WebService(ListeningService):
    """Listens on each endpoint; on stop closes the listeners and every
    WebSocket (their sessions log out like dropped TCP connections)."""

    def __init__(self, chat, library, listen, reactor, allowed_origins=(), counter=None, limits=None):
        super().__init__(WebSite(chat, library, allowed_origins, counter, limits, reactor), listen, reactor)

    @property
    def site(self):
        return self.factory

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.stop_listening()
        yield self.site.gateway.connections.disconnect_all()
