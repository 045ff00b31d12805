"""CAs this tool keeps on the operator's machine: `<dir>/NAME.pem` and `NAME.key.pem` (0600).

The smoke test's CA lives here: its certificate goes into the smoke group at apply time, and
the smoke test issues its throwaway device certificate from it. EC P-256, as the devices use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from operator_cli.errors import ConfigurationError

CA_YEARS = 10


@dataclass(frozen=True)
class LocalCa:
    name: str
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class DeviceCertificate:
    cert_pem: bytes
    key_pem: bytes


def ca_paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.pem", directory / f"{name}.key.pem"


def load_ca(directory: Path, name: str) -> LocalCa | None:
    cert_path, key_path = ca_paths(directory, name)
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"local CA {name} in {directory} is unreadable ({type(exc).__name__}); delete "
            f"{cert_path.name} and {key_path.name} to make a new one"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{key_path} does not hold an EC private key")
    return LocalCa(name, cert_path, key_path, certificate, key)


def ensure_ca(directory: Path, name: str) -> LocalCa:
    """The CA NAME, created on first use."""
    found = load_ca(directory, name)
    if found is not None:
        return found
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} enrollment CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = ca_paths(directory, name)
    directory.mkdir(parents=True, exist_ok=True)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), private=False)
    return LocalCa(name, cert_path, key_path, certificate, key)


def issue_device(ca: LocalCa, registration_id: str, *, serial_number: str) -> DeviceCertificate:
    """A client-auth leaf with CN = the registration id (DPS's rule for X.509 groups)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, registration_id),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=10))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return DeviceCertificate(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
