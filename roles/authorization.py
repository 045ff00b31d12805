"""authorize(): the one check backend services make before acting on a device's behalf."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from roles.catalog import RolePermissions

_CONFIGURATION_RANK = {"none": 0, "limited": 1, "full": 2}

_RULES: MappingProxyType[str, Callable[[RolePermissions], bool]] = MappingProxyType(
    {
        "telemetry.send": lambda p: p.telemetry.send,
        "telemetry.aggregate": lambda p: p.telemetry.aggregate,
        "commands.receive": lambda p: p.commands.receive,
        "commands.relay": lambda p: p.commands.relay,
        "configuration.limited": lambda p: _CONFIGURATION_RANK[p.configuration] >= 1,
        "configuration.full": lambda p: _CONFIGURATION_RANK[p.configuration] >= 2,
        "deviceManagement": lambda p: p.deviceManagement,
    }
)

ACTIONS: frozenset[str] = frozenset(_RULES)
"""Every action authorize() knows; anything else is denied."""


def authorize(permissions: RolePermissions, action: str) -> bool:
    """True when the permissions allow `action`; unknown actions are denied, never guessed."""
    rule = _RULES.get(action)
    return rule is not None and rule(permissions)


def granted_actions(permissions: RolePermissions) -> frozenset[str]:
    """The set of actions a role allows, used to compare roles by privilege."""
    return frozenset(action for action in ACTIONS if authorize(permissions, action))
