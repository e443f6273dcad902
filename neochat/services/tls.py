"""TLS for the message server and FTP: TLS 1.2 or newer, forward-secret AEAD
ciphers only (no CBC, no SHA-1 MACs), one certificate for both.

``ssl:`` listen endpoints are built here rather than by Twisted's endpoint
parser, whose ssl: form takes no minimum version or cipher list.
"""

from OpenSSL import SSL
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

# TLS 1.3 suites are all AEAD and are not affected by this list.
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"
SSL_ARGUMENTS = ("privateKey", "certKey", "interface", "backlog")


def modern_context(certfile, keyfile=None):
    """A pyOpenSSL server context with the certificate (chain) and key."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(MODERN_CIPHERS.encode("ascii"))
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.use_certificate_chain_file(certfile)
    context.use_privatekey_file(keyfile or certfile)
    context.check_privatekey()
    return context


@implementer(IOpenSSLContextFactory)
class ModernContextFactory:
    """What SSL4ServerEndpoint wants: ``getContext()``."""

    def __init__(self, certfile, keyfile=None):
        self._context = modern_context(certfile, keyfile)

    def getContext(self):
        return self._context


def split_description(description):
    """``ssl:7443:privateKey=k.pem`` as (["ssl", "7443"], {"privateKey": "k.pem"});
    ``\\:`` is a literal colon, as in Twisted's endpoint strings."""
    parts, current, escaped = [], "", False
    for character in description:
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == ":":
            parts.append(current)
            current = ""
        else:
            current += character
    parts.append(current)
    positional = [part for part in parts if "=" not in part]
    named = dict(part.split("=", 1) for part in parts if "=" in part)
    return positional, named


def ssl_files(description):
    """(certfile, keyfile) of an ``ssl:`` description, or None for another kind."""
    positional, named = split_description(description)
    if positional[0] != "ssl":
        return None
    key = named.get("privateKey", "server.pem")
    return named.get("certKey", key), key


def server_endpoint(reactor, description):
    """Twisted's endpoint for ``description``, with modern TLS for ``ssl:``."""
    files = ssl_files(description)
    if files is None:
        return serverFromString(reactor, description)
    positional, named = split_description(description)
    unknown = set(named) - set(SSL_ARGUMENTS)
    if len(positional) != 2 or unknown:
        raise ValueError(f"{description!r}: want ssl:PORT[:privateKey=…][:certKey=…][:interface=…]"
                         f"[:backlog=…]{' (unknown: ' + ', '.join(sorted(unknown)) + ')' if unknown else ''}")
    return SSL4ServerEndpoint(
        reactor, int(positional[1]), ModernContextFactory(*files),
        backlog=int(named.get("backlog", 50)), interface=named.get("interface", ""),
    )
