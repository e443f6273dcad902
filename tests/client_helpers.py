"""Library clients for the client tests: registered, logged in, and
collecting what is pushed to them."""

from twisted.internet import defer, reactor

from neochat.client.library import NeoChatClient, register

TIMEOUT = 10


class Collector:
    """Queues the pushes of one message_type for ``next``."""

    def __init__(self, client, message_type):
        self.queue = defer.DeferredQueue()
        client.subscribe(lambda message: message.get("message_type") == message_type and self.queue.put(message))

    def next(self):
        return self.queue.get().addTimeout(TIMEOUT, reactor)


async def library_client(server, account, password="secret", fresh=True, retry=lambda attempt: 0.05,
                         **options):
    if fresh:
        await register(reactor, "127.0.0.1", server.port, account, password)
    client = NeoChatClient(reactor, "127.0.0.1", server.port, account, password, retry=retry, **options)
    server.clients.append(client)  # stopped with the server
    client.close = client.stop
    await client.start()
    return client
