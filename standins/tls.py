"""A throwaway certificate authority, for stand-in servers that speak TLS.

Why: the tests of encryption in transit need servers whose certificates a client can
verify (or fail to verify) exactly as it would a production database's or API's: a CA
of the test's own, a server certificate it signed for chosen host names, and another CA
that signed nothing the server shows. Keys are EC P-256 (generated in milliseconds) and
live only as long as the test.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class ServerCertificate:
    """What a server needs to speak TLS: its certificate, its key and the CA that signed it (PEM)."""

    certificate: bytes
    key: bytes
    authority: bytes

    def write_files(self, folder: Path, owner: str | None) -> tuple[Path, Path, Path]:
        """``ca.pem``, ``server.crt`` and ``server.key`` in ``folder``, readable by ``owner`` (the
        server's account; None: ours) alone, as database servers demand of a key; their paths."""
        paths = (folder / "ca.pem", folder / "server.crt", folder / "server.key")
        for path, content in zip(paths, (self.authority, self.certificate, self.key), strict=True):
            path.write_bytes(content)
            path.chmod(0o600)
            if owner:
                shutil.chown(path, owner)
        return paths

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for Python servers (the HTTP stand-ins)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:  # the ssl module loads keys from files only
            _, certificate, key = self.write_files(Path(folder), owner=None)
            context.load_cert_chain(certificate, key)
        return context


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that issues server certificates."""

    name: str
    certificate: bytes
    _key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(name, certificate.public_bytes(serialization.Encoding.PEM), key)

    def issue(self, *names: str) -> ServerCertificate:
        """A server certificate for ``names`` (host names or IP addresses, as subject alternative names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        authority = x509.load_pem_x509_certificate(self.certificate)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        certificate = (
            _builder(subject, authority.subject, key.public_key())
            .add_extension(
                x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return ServerCertificate(
            certificate.public_bytes(serialization.Encoding.PEM), key_pem, self.certificate
        )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
