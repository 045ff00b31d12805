"""Asset type -> role: glob rules, first match wins, otherwise the least-privilege default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roles.catalog import RoleName, RolePermissions, permissions_for


class RoleRule(BaseModel):
    """One `[[role_rules]]` entry of the policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    asset_type: str = Field(min_length=1, max_length=128, description="glob, case-insensitive")
    role: RoleName

    @field_validator("asset_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


@dataclass(frozen=True)
class RoleAssignment:
    """The role given, and why: the rule that matched or the default."""

    role: RoleName
    permissions: RolePermissions
    reason: Literal["rule", "default"]
    matched_pattern: str | None


def assign_role(
    asset_type: str | None, rules: Sequence[RoleRule], default_role: RoleName
) -> RoleAssignment:
    """Pick the role for an asset type; no asset type (unknown device) means the default."""
    if asset_type is not None:
        key = asset_type.lower()
        for rule in rules:
            if fnmatchcase(key, rule.asset_type):
                return RoleAssignment(
                    rule.role, permissions_for(rule.role), "rule", rule.asset_type
                )
    return RoleAssignment(default_role, permissions_for(default_role), "default", None)
