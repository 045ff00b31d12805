"""The configured hubs' host names: per-hub state exists for these and no other name.

Hub names reach the wrappers from data an attacker can influence (a DPS webhook request's
linkedHubs ends up in reconciliation messages); a forged name must fail, not grow a dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from iothub_client.errors import UnknownHub

_SHOWN_CHARS = 80


class HubNames:
    """Case-insensitive set of hub host names; `key()` of any other name raises UnknownHub."""

    def __init__(self, hubs: Iterable[str]) -> None:
        self._names = frozenset(hub.lower() for hub in hubs)

    def key(self, hub: str) -> str:
        key = hub.lower()
        if key not in self._names:
            shown = hub if len(hub) <= _SHOWN_CHARS else hub[:_SHOWN_CHARS] + "..."
            raise UnknownHub(f"no IoT Hub connection is configured for {shown!r}")
        return key

    def __contains__(self, hub: object) -> bool:
        return isinstance(hub, str) and hub.lower() in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)
