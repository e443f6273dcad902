"""The NeoChat client: a library (``NeoChatClient``), the plugin daemon and a
terminal client.  It speaks the JSON dialect through ``neochat.wire`` and
imports nothing of the server."""
