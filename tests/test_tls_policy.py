"""TLS policy: TLS 1.2+ with AEAD ciphers only on the message server and FTP,
and FTP's AUTH TLS with the message server's certificate by default."""

import ftplib
import socket
import ssl

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from neochat.services.root import build_service
from tests.test_tls import self_signed

TIMEOUT = 10


@pytest_twisted.async_yield_fixture
async def tls_server(settings, tmp_path):
    key, cert = self_signed(tmp_path)
    settings.listen = [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
    settings.ftp.tls_required = True
    root = build_service(settings, reactor)
    root.startService()
    await root.ready
    yield root
    await root.stopService()


def client_context(version=None, ciphers=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def handshake(port, context):
    """The negotiated (version, cipher), or the SSLError."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.version(), tls.cipher()[0]
        except ssl.SSLError as error:
            return error


@pytest.mark.parametrize("version, ciphers", [
    (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0"),
])
@pytest_twisted.inlineCallbacks
def test_old_protocols_and_cbc_sha1_suites_are_refused_by_chat_and_ftp(tls_server, version, ciphers):
    chat_port = tls_server.chat_service.ports[0].getHost().port
    result = yield threads.deferToThread(handshake, chat_port, client_context(version, ciphers))
    assert isinstance(result, ssl.SSLError), result
    result = yield threads.deferToThread(ftp_auth_tls, tls_server.ftp_service.address[1],
                                         client_context(version, ciphers))
    assert isinstance(result, ssl.SSLError), result


@pytest_twisted.inlineCallbacks
def test_tls_1_2_with_aes_gcm_and_tls_1_3_are_served(tls_server):
    chat_port = tls_server.chat_service.ports[0].getHost().port
    result = yield threads.deferToThread(handshake, chat_port, client_context(ssl.TLSVersion.TLSv1_2))
    assert result[0] == "TLSv1.2" and ("GCM" in result[1] or "CHACHA20" in result[1])
    result = yield threads.deferToThread(handshake, chat_port, client_context())
    assert result[0] == "TLSv1.3"


def ftp_auth_tls(port, context):
    """AUTH TLS on the FTP server; the SSLError if the handshake fails."""
    ftp = ftplib.FTP_TLS(context=context)
    ftp.connect("127.0.0.1", port, timeout=TIMEOUT)
    try:
        ftp.auth()
    except ssl.SSLError as error:
        return error
    finally:
        ftp.close()
    return None


@pytest_twisted.inlineCallbacks
def test_ftp_offers_auth_tls_with_the_chat_certificate_and_refuses_plain_logins(tls_server):
    yield tls_server.accounts.register("ann", "pw")
    port = tls_server.ftp_service.address[1]

    def sessions():
        plain = ftplib.FTP()
        plain.connect("127.0.0.1", port, timeout=TIMEOUT)
        with pytest.raises(ftplib.error_perm) as refused:
            plain.login("ann", "pw")
        plain.close()
        secure = ftplib.FTP_TLS(context=client_context())
        secure.connect("127.0.0.1", port, timeout=TIMEOUT)
        welcome = secure.login("ann", "pw")
        secure.quit()
        return str(refused.value), welcome

    refusal, welcome = yield threads.deferToThread(sessions)
    assert refusal.startswith("550") or refusal.startswith("530")
    assert welcome.startswith("230")
