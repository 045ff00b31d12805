"""Where each emulated hub listens and how callers connect: the ready-file `hubs` section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .policies import OWNER_POLICY, Policy

LOOPBACK = "127.0.0.1"
DEFAULT_HUBS: tuple[tuple[str, int], ...] = (
    ("hub-us-east.azure-devices.net", 8443),
    ("hub-eu-west.azure-devices.net", 8444),
)


def short_name(hub_name: str) -> str:
    """hub-us-east.azure-devices.net -> hub-us-east (the hubName of notifications)."""
    return hub_name.split(".", 1)[0]


def parse_hub_arg(text: str) -> tuple[str, int]:
    """`NAME=PORT` from the command line."""
    name, sep, port = text.partition("=")
    name = name.strip().lower()
    if not sep or not name or "/" in name or ":" in name:
        raise ValueError(
            f"expected NAME=PORT such as hub-us-east.azure-devices.net=8443, got {text!r}"
        )
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"port of {name} must be a number, got {port!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port of {name} must be 0-65535, got {number}")
    return name, number


@dataclass(frozen=True)
class HubEndpoint:
    """A running hub: its Azure-style name, the loopback port serving it, its policies."""

    name: str
    port: int
    policies: Mapping[str, Policy]
    host: str = LOOPBACK

    @property
    def host_name(self) -> str:
        """What connection strings carry as HostName (and SAS tokens as their resource)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host_name}"

    def connection_string(self, policy: str = OWNER_POLICY) -> str:
        return self.policies[policy].connection_string(self.host_name)

    def token_resources(self) -> tuple[str, ...]:
        """SAS resources accepted as this hub: its loopback host names and its Azure name."""
        return (self.host_name, f"localhost:{self.port}", self.name)


def ready_info(endpoints: Sequence[HubEndpoint], ca_cert: Path | None) -> dict[str, Any]:
    """The emulator's part of its ready file: `{"hubs": {name: {...}}, "caCert": ...}`."""
    info: dict[str, Any] = {
        "hubs": {
            endpoint.name: {
                "hubName": short_name(endpoint.name),
                "url": endpoint.url,
                "hostName": endpoint.host_name,
                "port": endpoint.port,
                "connectionString": endpoint.connection_string(),
                "connectionStrings": {
                    name: endpoint.connection_string(name) for name in endpoint.policies
                },
            }
            for endpoint in endpoints
        }
    }
    if ca_cert is not None:
        info["caCert"] = str(ca_cert)
    return info


@dataclass(frozen=True)
class HubConnectionInfo:
    """One hub as a caller reads it back from the ready file."""

    name: str
    url: str
    host_name: str
    port: int
    connection_string: str


def hubs_from_ready_info(info: Mapping[str, Any]) -> dict[str, HubConnectionInfo]:
    """Parse the `hubs` section written by ready_info()."""
    return {
        name: HubConnectionInfo(
            name=name,
            url=str(hub["url"]),
            host_name=str(hub["hostName"]),
            port=int(hub["port"]),
            connection_string=str(hub["connectionString"]),
        )
        for name, hub in info["hubs"].items()
    }
