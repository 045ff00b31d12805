"""The routing and role policy as the app reads it: one versioned TOML file, validated once.

Data only: every flow that needs a rule of the policy (allocation, sync, reconciliation) reads it
from here, and policies.loader reads the file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from policies.trust import TrustPolicy
from roles import RoleName, RoleRule, permissions_for
from roles.authorization import granted_actions

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HubHostName = Annotated[
    str,
    StringConstraints(max_length=259, pattern=rf"^{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?$"),
]
"""An IoT hub's host name (a port may follow, for a local emulator)."""


class HubRule(BaseModel):
    """One `[[hub_rules]]` entry: assets whose location matches the glob go to `hub`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
    hub: HubHostName

    @field_validator("location")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class AttestationPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clock_skew_seconds: int = Field(300, ge=0, le=3600)


class OutagePolicy(BaseModel):
    """What the webhook does when the asset system is down (not when it answers 4xx).

    The fallback admits only a plain first registration; anything that needs the asset
    system's word (a replacement claim, a re-registration) is deferred instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["fallback", "defer"] = "fallback"
    retry_after_seconds: int = Field(10, ge=1, le=300)
    budget_seconds: float = Field(4.0, gt=0, le=30)
    reconciliation_deadline_hours: float = Field(24.0, gt=0, le=24 * 30)
    """A fallback device still pending reconciliation this long after its registration is
    disabled by the sweep (and enabled again if reconciliation succeeds later)."""


class ReplacementPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    old_device: Literal["disable", "delete"] = "disable"
    """What happens to the replaced device's identity on its hub."""
    same_serial: Literal["reject", "replace"] = "reject"
    """A new device id with an asset's serial and no replacementFor claim (a re-keyed device)."""
    registry_ops_per_minute: int = Field(90, ge=1, le=100_000)
    """Identity-registry writes per hub; S1 allows 100/min/unit."""
    approval_ttl_hours: float = Field(72.0, gt=0, le=24 * 90)
    """An approval expires this long after its approvedAt."""
    unbound_approvals: Literal["refuse", "window"] = "refuse"
    """An approval naming neither serial nor thumbprint: refused, or accepted for a short
    window after approval (the first device to claim it wins)."""
    unbound_window_minutes: float = Field(15.0, gt=0, le=24 * 60)


class Policy(BaseModel):
    """Everything the allocation decision needs besides the request and the asset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    default_role: RoleName
    unknown_device: Literal["reject", "quarantine"] = "reject"
    hub_fallback: Literal["reject", "spread"] = "reject"
    hub_rules: list[HubRule] = Field(default_factory=list)
    role_rules: list[RoleRule] = Field(default_factory=list)
    attestation: AttestationPolicy = AttestationPolicy()
    outage: OutagePolicy = OutagePolicy()
    replacement: ReplacementPolicy = ReplacementPolicy()
    trust: TrustPolicy = TrustPolicy()

    @model_validator(mode="after")
    def _default_is_least_privilege(self) -> Policy:
        default = granted_actions(permissions_for(self.default_role))
        for index, rule in enumerate(self.role_rules):
            if not default <= granted_actions(permissions_for(rule.role)):
                raise ValueError(
                    f"default_role {self.default_role.value!r} grants more than role "
                    f"{rule.role.value!r} of role_rules[{index}]; "
                    "the default must be least privilege"
                )
        return self
