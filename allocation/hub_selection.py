"""Location -> IoT hub, constrained to the hubs DPS linked for this device."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from allocation.errors import NoHubForDevice
from device_twin import HubSelection
from policies import HubRule


@dataclass(frozen=True)
class HubChoice:
    hub: str
    selection: HubSelection
    reason: str


def select_hub(
    *,
    location: str | None,
    linked_hubs: Sequence[str],
    rules: Sequence[HubRule],
    fallback: Literal["reject", "spread"],
    registration_id: str,
    current_hub: str | None,
) -> HubChoice:
    """First rule whose glob matches the location wins; it must name a linked hub."""
    linked = {hub.lower(): hub for hub in linked_hubs}
    if location is not None:
        key = location.lower()
        for rule in rules:
            if fnmatchcase(key, rule.location):
                hub = linked.get(rule.hub.lower())
                if hub is not None:
                    return HubChoice(hub, HubSelection.LOCATION, f"rule {rule.location!r}")
                problem = f"location {location!r} maps to {rule.hub}, which DPS did not link"
                break
        else:
            problem = f"no hub rule matches location {location!r}"
        if fallback == "reject":
            raise NoHubForDevice(problem)
    else:
        problem = "the device has no asset location"
    return spread(linked_hubs, registration_id, current_hub, problem)


def spread(
    linked_hubs: Sequence[str], registration_id: str, current_hub: str | None, why: str
) -> HubChoice:
    """A stable choice: the same registration id always lands on the same hub for the same set.

    A device that is already on a linked hub stays there, so a changed hub list does not move it.
    """
    linked = {hub.lower(): hub for hub in linked_hubs}
    if current_hub is not None and current_hub.lower() in linked:
        return HubChoice(
            linked[current_hub.lower()], HubSelection.SPREAD, f"{why}; kept current hub"
        )
    ordered = sorted(linked)
    digest = hashlib.sha256(registration_id.casefold().encode()).digest()
    chosen = ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
    return HubChoice(linked[chosen], HubSelection.SPREAD, f"{why}; spread by registration id")
