"""Device roles: the catalog of permissions, asset-type rules, and authorization checks."""

from roles.authorization import ACTIONS, authorize
from roles.catalog import (
    ROLE_CATALOG,
    CommandPermissions,
    ConfigurationLevel,
    RoleName,
    RolePermissions,
    TelemetryPermissions,
    permissions_for,
)
from roles.rules import RoleAssignment, RoleRule, assign_role

__all__ = [
    "ACTIONS",
    "ROLE_CATALOG",
    "CommandPermissions",
    "ConfigurationLevel",
    "RoleAssignment",
    "RoleName",
    "RolePermissions",
    "RoleRule",
    "TelemetryPermissions",
    "assign_role",
    "authorize",
    "permissions_for",
]
