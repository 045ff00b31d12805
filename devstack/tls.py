"""The devstack's own TLS: one local CA, generated into the data dir, behind every HTTPS endpoint.

Clients trust `ca.pem` (stack.json's `tls.caCert`); the server certificate covers loopback by
IP and name, so the azure-iot-hub SDK (HostName=127.0.0.1:port) and Node clients both verify it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from devstack.certificates import TestCertificateAuthority

SERVER_DNS_NAMES = ("localhost", "*.azure-devices.net", "*.azure-devices-provisioning.net")
SERVER_IPS = ("127.0.0.1", "::1")
_RENEW_BEFORE = timedelta(days=7)


@dataclass(frozen=True)
class DevstackTls:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    def authority(self) -> TestCertificateAuthority:
        return TestCertificateAuthority.from_files(self.ca_cert, self.ca_key)


def ensure_tls(data_dir: Path) -> DevstackTls:
    """Create the CA and server certificate once; renew the server certificate near expiry."""
    directory = data_dir / "tls"
    files = DevstackTls(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key.pem",
    )
    if files.ca_cert.exists() and files.ca_key.exists():
        authority = files.authority()
    else:
        authority = TestCertificateAuthority(name="Devstack Local CA")
        authority.issued.write(directory, "ca")
    if not _fresh(files.server_cert):
        server = authority.issue_server(
            "devstack", dns_names=SERVER_DNS_NAMES, ip_addresses=SERVER_IPS
        )
        server.write(directory, "server")
    return files


def _fresh(path: Path) -> bool:
    if not path.exists():
        return False
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.not_valid_after_utc - _RENEW_BEFORE > datetime.now(UTC)
