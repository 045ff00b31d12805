"""Which hub is reached how: a SAS connection string per hub, or a managed identity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

_REQUIRED_PARTS = ("HostName", "SharedAccessKeyName", "SharedAccessKey")
_KNOWN_PARTS = frozenset({*_REQUIRED_PARTS, "DeviceId", "ModuleId", "GatewayHostName"})


@dataclass(frozen=True)
class HubConnection:
    """`hub` is the name DPS and the policy use; `endpoint` is the host[:port] the SDK calls."""

    hub: str
    endpoint: str
    auth: Literal["connectionString", "managedIdentity"]
    connection_string: str | None = None

    def __repr__(self) -> str:  # never print the key
        return f"HubConnection(hub={self.hub!r}, endpoint={self.endpoint!r}, auth={self.auth!r})"


class HubConnections(Mapping[str, HubConnection]):
    """Hub host name (case-insensitive) -> connection."""

    def __init__(self, connections: list[HubConnection]) -> None:
        self._by_name = {connection.hub.lower(): connection for connection in connections}

    def __getitem__(self, hub: str) -> HubConnection:
        return self._by_name[hub.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @classmethod
    def from_connection_strings(cls, strings: Mapping[str, str]) -> HubConnections:
        return cls(
            [
                HubConnection(
                    hub=hub,
                    endpoint=parse_connection_string(text, hub)["HostName"],
                    auth="connectionString",
                    connection_string=text,
                )
                for hub, text in strings.items()
            ]
        )

    @classmethod
    def managed_identity(
        cls, hubs: list[str], endpoints: Mapping[str, str] | None = None
    ) -> HubConnections:
        """Managed identity reaches each hub at its own name unless an endpoint overrides it."""
        overrides = {name.lower(): endpoint for name, endpoint in (endpoints or {}).items()}
        return cls(
            [
                HubConnection(
                    hub=hub, endpoint=overrides.get(hub.lower(), hub), auth="managedIdentity"
                )
                for hub in hubs
            ]
        )


def parse_connection_string(text: str, hub: str) -> dict[str, str]:
    """Split `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`; errors name no secret."""
    parts: dict[str, str] = {}
    for position, segment in enumerate(text.split(";"), start=1):
        if not segment.strip():
            continue
        name, separator, value = segment.partition("=")
        name = name.strip()
        if not separator or not value.strip():
            # A part without a known name may be the key itself (a lost "SharedAccessKey="):
            # only a known part name is safe to print.
            shown = repr(name) if name in _KNOWN_PARTS else f"number {position}"
            raise ValueError(f"connection string for {hub} has a malformed part {shown}")
        parts[name] = value.strip()
    missing = [part for part in _REQUIRED_PARTS if part not in parts]
    if missing:
        raise ValueError(f"connection string for {hub} lacks {', '.join(missing)}")
    return parts
