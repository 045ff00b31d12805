"""Trust anchors the policy may pin: the enrollment groups served and the CAs that issue devices.

Defence in depth. DPS verifies the device's chain before it calls the webhook, but anyone who
holds the function key can call the webhook directly with a request of their making. Pinned
groups refuse requests from any other enrollment; pinned CAs refuse a certificate that does not
verify against them (signature, validity, CA constraints). No I/O: the policy loader reads the
CA files, these checks only look at what they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from allocation.errors import CertificateRequired, UntrustedEnrollment, UntrustedIssuer
from policies.trust import TrustPolicy

_CERTIFICATE_FIELD = "deviceRuntimeContext.x509.clientCertificate"


def check_enrollment(trust: TrustPolicy, *, group_id: str | None, individual: bool) -> None:
    """Raise UntrustedEnrollment unless this enrollment is served."""
    if individual:
        served = trust.individual_enrollments
        if served is None:
            served = trust.enrollment_groups is None
        if not served:
            raise UntrustedEnrollment(
                "an individual enrollment; the policy serves only enrollment groups "
                "(trust.individual_enrollments)",
                public="individualEnrollment: not served by this webhook "
                "(policy trust.individual_enrollments)",
            )
        return
    if trust.enrollment_groups is None:
        return
    pinned = {group.casefold() for group in trust.enrollment_groups}
    if group_id is None or group_id.casefold() not in pinned:
        raise UntrustedEnrollment(
            f"enrollment group {str(group_id)[:128]!r} is not in trust.enrollment_groups",
            public="enrollmentGroup.enrollmentGroupId: not served by this webhook "
            "(policy trust.enrollment_groups)",
        )


def check_issuer(trust: TrustPolicy, chain: Sequence[x509.Certificate], *, now: datetime) -> None:
    """Verify the leaf (chain[0]) against the pinned CAs; the rest are intermediates.

    A thumbprint pin anchors the chain at a certificate the request itself carries, so it
    only helps when the device presents its chain; PEM pins work with the leaf alone.
    """
    if not trust.pins_issuers:
        return
    if not chain:
        if trust.require_certificate:
            raise CertificateRequired(
                "deviceRuntimeContext.x509",
                "the policy pins issuing CAs and requires the certificate itself "
                "(trust.require_certificate)",
            )
        return
    leaf, presented = chain[0], list(chain[1:])
    anchors = list(trust.anchors) + [
        certificate for certificate in presented if trust.pins_thumbprint_of(certificate)
    ]
    if not anchors:
        raise UntrustedIssuer(
            _CERTIFICATE_FIELD,
            "not issued by a CA the policy pins (trust.issuing_cas)",
            evidence="no pinned CA certificate available for this chain",
        )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            # Device certificates rarely carry a subjectAltName or a client-auth EKU;
            # the chain, signatures and validity are what the webhook can check.
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, presented)
    except VerificationError as exc:
        raise UntrustedIssuer(
            _CERTIFICATE_FIELD,
            "not issued by a CA the policy pins (trust.issuing_cas)",
            evidence=str(exc),
        ) from exc
    except ValueError as exc:
        raise UntrustedIssuer(
            _CERTIFICATE_FIELD,
            "not issued by a CA the policy pins (trust.issuing_cas)",
            evidence=f"{type(exc).__name__}",
        ) from exc
