"""The routing and role policy: its model, its loader, and the policy files beside them."""

from policies.loader import PolicyError, load_policy, parse_policy
from policies.model import (
    AttestationPolicy,
    HubHostName,
    HubRule,
    OutagePolicy,
    Policy,
    ReplacementPolicy,
)
from policies.trust import TrustPolicy

__all__ = [
    "AttestationPolicy",
    "HubHostName",
    "HubRule",
    "OutagePolicy",
    "Policy",
    "PolicyError",
    "ReplacementPolicy",
    "TrustPolicy",
    "load_policy",
    "parse_policy",
]
