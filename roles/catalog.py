"""The role catalog: what each device role may do, in the exact shape the twin carries."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class RoleName(StrEnum):
    SENSOR = "sensor"
    ACTUATOR = "actuator"
    GATEWAY = "gateway"


ConfigurationLevel = Literal["none", "limited", "full"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TelemetryPermissions(_Frozen):
    send: bool
    aggregate: bool


class CommandPermissions(_Frozen):
    receive: bool
    relay: bool


class RolePermissions(_Frozen):
    """Serialized as desired.rolePermissions; field names are the wire names."""

    role: RoleName
    telemetry: TelemetryPermissions
    commands: CommandPermissions
    configuration: ConfigurationLevel
    deviceManagement: bool  # noqa: N815 - wire name


ROLE_CATALOG: dict[RoleName, RolePermissions] = {
    RoleName.SENSOR: RolePermissions(
        role=RoleName.SENSOR,
        telemetry=TelemetryPermissions(send=True, aggregate=False),
        commands=CommandPermissions(receive=False, relay=False),
        configuration="none",
        deviceManagement=False,
    ),
    RoleName.ACTUATOR: RolePermissions(
        role=RoleName.ACTUATOR,
        telemetry=TelemetryPermissions(send=True, aggregate=False),
        commands=CommandPermissions(receive=True, relay=False),
        configuration="limited",
        deviceManagement=False,
    ),
    RoleName.GATEWAY: RolePermissions(
        role=RoleName.GATEWAY,
        telemetry=TelemetryPermissions(send=True, aggregate=True),
        commands=CommandPermissions(receive=True, relay=True),
        configuration="full",
        deviceManagement=True,
    ),
}


def permissions_for(role: RoleName) -> RolePermissions:
    return ROLE_CATALOG[role]
