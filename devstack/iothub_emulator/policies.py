"""Shared access policies: the names and rights a new IoT hub comes with, and their keys."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Right(StrEnum):
    REGISTRY_READ = "RegistryRead"
    REGISTRY_WRITE = "RegistryWrite"
    SERVICE_CONNECT = "ServiceConnect"
    DEVICE_CONNECT = "DeviceConnect"


ALL_RIGHTS = frozenset(Right)
OWNER_POLICY = "iothubowner"

# IoT Hub's built-in policies minus `device` (devices do not use the service API).
DEFAULT_POLICY_RIGHTS: dict[str, frozenset[Right]] = {
    OWNER_POLICY: ALL_RIGHTS,
    "service": frozenset({Right.SERVICE_CONNECT}),
    "registryRead": frozenset({Right.REGISTRY_READ}),
    "registryReadWrite": frozenset({Right.REGISTRY_READ, Right.REGISTRY_WRITE}),
}


@dataclass(frozen=True)
class Policy:
    name: str
    primary_key: str
    secondary_key: str
    rights: frozenset[Right]

    def connection_string(self, host_name: str) -> str:
        return (
            f"HostName={host_name};SharedAccessKeyName={self.name};"
            f"SharedAccessKey={self.primary_key}"
        )


def new_key() -> str:
    """A random 32-byte key, base64 encoded, as the portal generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")
