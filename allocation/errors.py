"""Why an allocation is refused. Each error maps to one DPS-facing status in problem_details."""

from __future__ import annotations

from dataclasses import dataclass


class AllocationError(Exception):
    """Base of every refusal the webhook answers itself (asset errors live in asset_client)."""

    code = "allocation-failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class BodyTooLarge(AllocationError):
    code = "body-too-large"


class InvalidRequest(AllocationError):
    """The body is not JSON, or not the DPS request shape; `problems` name each field."""

    code = "invalid-request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class AttestationError(AllocationError):
    """The attestation is unreadable, inconsistent or not valid now; `field` names where."""

    code = "invalid-attestation"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class CertificateUnreadable(AttestationError):
    code = "certificate-unreadable"


class CertificateExpired(AttestationError):
    code = "certificate-expired"


class CertificateNotYetValid(AttestationError):
    code = "certificate-not-yet-valid"


class CommonNameMismatch(AttestationError):
    code = "common-name-mismatch"


class ThumbprintMismatch(AttestationError):
    code = "thumbprint-mismatch"


class AmbiguousSubject(AttestationError):
    code = "ambiguous-subject"


class AllocationDeferred(AllocationError):
    """The asset system is down and the outage policy is `defer`: DPS should retry later."""

    code = "asset-system-unavailable"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ReplacementRefused(AllocationError):
    """A replacementFor claim the asset system did not approve: treated as spoofing."""

    code = "replacement-refused"


class UnknownDevice(AllocationError):
    """No asset for this device and the policy says reject."""

    code = "unknown-device"


class AssetNotAssignable(AllocationError):
    """The asset exists but cannot take this device (retired, ambiguous, linked elsewhere)."""

    code = "asset-not-assignable"


class NoHubForDevice(AllocationError):
    """No rule maps the location to a linked hub and the policy says reject."""

    code = "no-hub-for-location"
