"""A local test CA and device certificates, made with `cryptography`, for tests and the simulator.

EC P-256 keys: as real as RSA for everything the webhook does, and ~100x faster to generate.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der_base64(self) -> str:
        """The shape DPS forwards as x509.clientCertificate, the best evidenced one
        (docs/contracts.md, "The x509 attestation shape").
        """
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def sha1_thumbprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an id

    @property
    def sha256_thumbprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex().upper()

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key.pem"
        cert_path.write_text(self.pem)
        key_path.write_text(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


@dataclass
class TestCertificateAuthority:
    """A root CA that issues device (leaf) certificates, like an enrollment group's signer."""

    __test__ = False  # not a pytest test class

    name: str = "Devstack Test Root CA"
    issued: IssuedCertificate = field(init=False)

    def __post_init__(self) -> None:
        self.issued = _ca_certificate(self.name, issuer=None, path_length=None)

    def issue_intermediate(
        self, name: str = "Devstack Intermediate CA"
    ) -> TestCertificateAuthority:
        """A CA this one signs, which issues device certificates in its turn."""
        authority = TestCertificateAuthority.__new__(TestCertificateAuthority)
        authority.name = name
        authority.issued = _ca_certificate(name, issuer=self.issued, path_length=0)
        return authority

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path) -> TestCertificateAuthority:
        """Load a CA written earlier with `issued.write(...)`, e.g. from .devstack/."""
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} does not hold an EC private key")
        authority = cls.__new__(cls)
        authority.name = certificate.subject.rfc4514_string()
        authority.issued = IssuedCertificate(certificate, key)
        return authority

    def issue_server(
        self, common_name: str, *, dns_names: Sequence[str], ip_addresses: Sequence[str]
    ) -> IssuedCertificate:
        """A TLS server certificate for the devstack's HTTPS endpoints."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        ca = self.issued
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=10))
            .not_valid_after(now + timedelta(days=397))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
            )
            .sign(ca.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate, key)

    def issue_device(
        self,
        common_name: str,
        *,
        serial_number: str | None = None,
        organization: str | None = "Contoso",
        organizational_units: Sequence[str] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        subject: x509.Name | None = None,
    ) -> IssuedCertificate:
        """A client-auth leaf whose subject CN is the registration id (DPS's X.509 rule)."""
        if subject is None:
            attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
            if serial_number is not None:
                attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
            if organization is not None:
                attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
            attributes += [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)
                for unit in organizational_units
            ]
            subject = x509.Name(attributes)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        ca = self.issued
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=10))
            .not_valid_after(not_after or now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
            )
            .sign(ca.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate, key)


def _ca_certificate(
    name: str, *, issuer: IssuedCertificate | None, path_length: int | None
) -> IssuedCertificate:
    """A CA certificate: self-signed (a root) without an issuer, else signed by it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer = issuer.key if issuer else key
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650 if issuer is None else 1825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    return IssuedCertificate(builder.sign(signer, hashes.SHA256()), key)
