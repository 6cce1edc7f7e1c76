"""Connecting to the vetted address keeps HTTPS whole: SNI, Host and the certificate check
are those of the URL's host name, not of the address connected to."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.notifier.pinned_http import PinnedPoster
from tests.integration.http_receivers import QuietHandler, port_of, serving

pytestmark = pytest.mark.integration

HOST = "127.0.0.2"
NAME = "hooks.tls.test"


def _certificate(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
                 signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass
class TlsReceiver:
    port: int = 0
    ca_file: Path = Path()
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tasksaga test CA")])
    ca = _certificate("tasksaga test CA", ca_name, ca_key, ca_key, ca=True)
    leaf = _certificate(NAME, ca_name, leaf_key, ca_key, ca=False)
    state = TlsReceiver(ca_file=tmp_path / "ca.pem")
    state.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem")
    context.sni_callback = lambda sock, name, ctx: state.server_names.append(name)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            state.hosts.append(self.headers.get("Host", ""))
            self.answer(200)

    with serving(Handler, HOST, tls=context) as server:
        state.port = port_of(server)
        yield state


def resolver(host: str, port: int) -> Sequence[str]:
    return [HOST]  # every name of this test "resolves" to the receiver's address


def test_https_to_the_vetted_address_keeps_sni_host_and_certificate_checks(
    tls_receiver: TlsReceiver,
) -> None:
    guard = UrlGuard([f"{HOST}/32"], resolver)
    poster = PinnedPoster(5.0, ssl_context=ssl.create_default_context(
        cafile=str(tls_receiver.ca_file)))
    try:
        good = poster.post(guard.vet(f"https://{NAME}:{tls_receiver.port}/hook"), b"{}", {})
        wrong = poster.post(guard.vet(f"https://other.tls.test:{tls_receiver.port}/hook"),
                            b"{}", {})
    finally:
        poster.close()
    print(f"TLS to {HOST}: {NAME} -> {good.status_code} (SNI {tls_receiver.server_names[0]!r}),"
          f" other.tls.test -> {wrong.error} ({wrong.detail})")
    assert (good.status_code, good.error) == (200, None)
    assert tls_receiver.server_names[0] == NAME
    assert tls_receiver.hosts == [f"{NAME}:{tls_receiver.port}"]
    # Same address, a name the certificate does not carry: the host name check still fails.
    assert (wrong.status_code, wrong.error) == (None, "connection failed")
    assert wrong.detail is not None and "CERTIFICATE_VERIFY_FAILED" in wrong.detail
    assert tls_receiver.server_names[1:] == ["other.tls.test"]
