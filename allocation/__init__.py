"""The DPS custom allocation webhook: contract, attestation, hub selection, decision, service.

The HTTP trigger lives in allocation.blueprint, imported only by function_app.
"""

from allocation.attestation import read_identity
from allocation.contract import AllocationRequest, AllocationResponse
from allocation.decision import AllocationDecision, decide_allocation
from allocation.errors import AllocationError
from allocation.hub_selection import HubChoice, select_hub
from allocation.identity import DeviceIdentity, IdentitySource, Sourced
from allocation.service import AllocationService
from policies import Policy, PolicyError, load_policy, parse_policy

__all__ = [
    "AllocationDecision",
    "AllocationError",
    "AllocationRequest",
    "AllocationResponse",
    "AllocationService",
    "DeviceIdentity",
    "HubChoice",
    "IdentitySource",
    "Policy",
    "PolicyError",
    "Sourced",
    "decide_allocation",
    "load_policy",
    "parse_policy",
    "read_identity",
    "select_hub",
]
