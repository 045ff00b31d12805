"""Why an allocation is refused. Each error maps to one DPS-facing status in problem_details.

Every refusal carries two texts. `public` is what DPS relays to the device: it names the field
or the rule that failed and never another device's id, an asset id, an approved serial or the
asset system's own words. `detail` is the full story, for the log and the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from app_errors import AppError, BadInput, DependencyUnavailable, Refused

_MAX_EVIDENCE = 300


class AllocationError(AppError):
    """Base of every refusal the webhook answers itself (asset errors live in asset_client)."""

    code = "allocation-failed"
    public_reason = "the registration was refused"

    def __init__(self, detail: str, *, public: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.public = public or self.public_reason


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class BodyTooLarge(AllocationError, BadInput):
    code = "body-too-large"


class InvalidRequest(AllocationError, BadInput):
    """The body is not JSON, or not the DPS request shape; `problems` name each field."""

    code = "invalid-request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail, public=detail)
        self.problems = problems or []


class AttestationError(AllocationError, BadInput):
    """The attestation is unreadable, inconsistent or not valid now; `field` names where.

    `reason` names the rule and is answered; `evidence` (values from the request) is only
    logged, length-capped.
    """

    code = "invalid-attestation"

    def __init__(self, field: str, reason: str, *, evidence: str | None = None) -> None:
        public = f"{field}: {reason}"
        detail = public + (f" ({evidence[:_MAX_EVIDENCE]})" if evidence else "")
        super().__init__(detail, public=public)
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


class CertificateSummaryMismatch(AttestationError):
    """The certificate and DPS's summary of it disagree on its subject or serial."""

    code = "certificate-summary-mismatch"


class AmbiguousSubject(AttestationError):
    code = "ambiguous-subject"


class CertificateRequired(AttestationError):
    """The policy pins issuing CAs and requires the certificate itself, which is missing."""

    code = "certificate-required"


class UntrustedIssuer(AttestationError):
    """The certificate does not verify against any CA the policy pins."""

    code = "untrusted-issuer"


class UntrustedEnrollment(AllocationError, Refused):
    """The request comes from an enrollment the policy does not let this webhook serve."""

    code = "untrusted-enrollment"
    public_reason = "the enrollment is not served by this webhook (policy trust.enrollment_groups)"


class AllocationDeferred(AllocationError, DependencyUnavailable):
    """The asset system is down and its word is needed: DPS should retry later."""

    code = "asset-system-unavailable"
    public_reason = "the asset system is unavailable; retry later"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ReplacementRefused(AllocationError, Refused):
    """A replacementFor claim without a matching, unexpired, unused approval for this hardware.

    `rule` names which check failed; the device is told only its broad class (`public_rule`).
    """

    code = "replacement-refused"

    def __init__(self, detail: str, *, rule: str = "no-approval") -> None:
        self.rule = rule
        self.public_rule = _PUBLIC_REPLACEMENT_RULES.get(rule, "no-approval")
        super().__init__(
            f"{rule}: {detail}",
            public="deviceRuntimeContext.payload.replacementFor: refused "
            f"({self.public_rule}); a replacement needs an unexpired, unused approval that "
            "names this device's certificate serial or thumbprint",
        )


_PUBLIC_REPLACEMENT_RULES = {
    "approval-expired": "approval-expired",
    "approval-without-date": "approval-expired",
    "approval-unbound": "approval-unbound",
    "serial-mismatch": "hardware-mismatch",
    "thumbprint-mismatch": "hardware-mismatch",
}


class UnknownDevice(AllocationError, Refused):
    """No asset for this device and the policy says reject."""

    code = "unknown-device"
    public_reason = "no asset matches this device (policy unknown_device = 'reject')"


class AssetNotAssignable(AllocationError, Refused):
    """The asset exists but cannot take this device (retired, ambiguous, linked elsewhere)."""

    code = "asset-not-assignable"
    public_reason = "the asset of this device cannot take it"


class AssetRecordInvalid(AllocationError, Refused):
    """The asset system answered a record that breaks its contract: refused, not an outage."""

    code = "asset-record-invalid"
    public_reason = "the asset record of this device is invalid; an operator must fix it"


class NoHubForDevice(AllocationError, Refused):
    """No rule maps the location to a linked hub and the policy says reject."""

    code = "no-hub-for-location"
    public_reason = "no hub rule maps the asset's location to a linked hub (policy hub_rules)"
