"""TLS: an ssl: endpoint in --listen serves both dialects."""

import datetime
import json
import socket
import ssl

import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, threads

from neochat.services.root import build_service


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def talk_over_tls(port):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    replies = []
    for request in (b'{"message_type":"register","username":"tls","password":"pw"}\n',
                    b"message_type: login\nuser_account: tls\nuser_password: pw\n\n"):
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as sock:
            sock.sendall(request)
            replies.append(sock.recv(1000))
    return replies


@pytest_twisted.inlineCallbacks
def test_both_dialects_work_over_an_ssl_endpoint(settings, tmp_path):
    key, cert = self_signed(tmp_path)
    settings.listen = [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
    root = build_service(settings, reactor)
    root.startService()
    try:
        yield root.ready
        port = root.chat_service.ports[0].getHost().port
        json_reply, header_reply = yield threads.deferToThread(talk_over_tls, port)
        assert json.loads(json_reply) == {"message_type": "register", "content": "success"}
        assert header_reply == b"message_type: login\nstat: 200\n\n"
    finally:
        yield root.stopService()
