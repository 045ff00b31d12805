"""Hostile webhook requests for property-based tests: bodies, DNs, certificates, DER mutations.

Shared by the in-process fuzz (tests/unit) and the one through the dev host (tests/integration).
The victim is a device whose asset, approved serial and id must never reach another caller.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from hypothesis import strategies as st

from devstack.certificates import IssuedCertificate, TestCertificateAuthority
from devstack.dps_requests import DEMO_HUBS, enrollment_group_record

VICTIM_DEVICE = "Victim.Device_7"
"""Uppercase, a dot and an underscore: never a registration id the strategies below draw."""
VICTIM_ASSET = "AST-VICTIM-7"
VICTIM_SERIAL = "SN-VICTIM-7"
APPROVED_SERIAL = "SN-APPROVED-SECRET"
SECRETS = ("SharedAccessKey=", "AccountKey=", "sig=", "x-api-key", "Bearer ", "devstack-asset-key")
INTERNALS = ("Traceback", 'File "', "Error(", "asset API answered")
FORBIDDEN = (VICTIM_DEVICE, VICTIM_ASSET, VICTIM_SERIAL, APPROVED_SERIAL, *SECRETS, *INTERNALS)

_ID = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40).filter(
    lambda text: text[0].isalnum() and text[-1].isalnum()
)
_DN_ALPHABET = st.characters(
    categories=("Lu", "Ll", "Nd", "Zs", "Po", "Sm", "Cc", "So"),
    include_characters=',=+;\\#"<> \x00\u202e',
)


@dataclass(frozen=True)
class Certificates:
    """Certificates for one registration id: from a CA, from another CA, and expired."""

    registration_id: str
    good: IssuedCertificate
    other_ca: IssuedCertificate
    expired: IssuedCertificate

    @classmethod
    def make(cls, registration_id: str = "sensor-1001", serial: str = "SN-1001") -> Certificates:
        ca, stranger = TestCertificateAuthority(), TestCertificateAuthority("Stranger CA")
        now = datetime.now(UTC)
        return cls(
            registration_id=registration_id,
            good=ca.issue_device(registration_id, serial_number=serial),
            other_ca=stranger.issue_device(registration_id, serial_number=serial),
            expired=ca.issue_device(
                registration_id,
                serial_number=serial,
                not_before=now - timedelta(days=30),
                not_after=now - timedelta(days=1),
            ),
        )


def mostly(
    usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Usually `usual`, one time in five `hostile`: each field alone goes wrong now and then,
    so that most requests get past parsing and reach the checks deeper in."""
    # Hypothesis favours small integers (its shrink target), so the usual branch sits at 0.
    return st.integers(0, 4).flatmap(lambda n: hostile if n == 4 else usual)


def _der(certificate: IssuedCertificate) -> bytes:
    return certificate.certificate.public_bytes(serialization.Encoding.DER)


@st.composite
def mutated_der(draw: st.DrawFn, certificates: Certificates) -> str:
    """A real certificate's DER with bytes flipped, cut, inserted or repeated; base64."""
    der = bytearray(_der(draw(st.sampled_from([certificates.good, certificates.other_ca]))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(der) - 1))
        operation = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "zero-length"]))
        if operation == "flip":
            der[at] ^= draw(st.integers(1, 255))
        elif operation == "cut":
            del der[at:]
            if not der:
                der.append(0x30)
        elif operation == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "repeat":
            der[at:at] = der[at : at + draw(st.integers(1, 32))]
        else:
            der[at] = 0x00
    return base64.b64encode(bytes(der)).decode()


def certificate_fields(certificates: Certificates) -> st.SearchStrategy[Any]:
    good = certificates.good
    pem_chain = good.pem + certificates.other_ca.pem
    return mostly(
        st.one_of(
            st.just(good.der_base64),
            st.just(certificates.other_ca.der_base64),
            st.just(pem_chain),
            mutated_der(certificates),
        ),
        st.one_of(
            st.just(certificates.expired.der_base64),
            st.just(good.pem.replace("A", "B", 3)),
            st.text(max_size=300),
            st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()),
            st.integers(),
            st.none(),
        ),
    )


def distinguished_names() -> st.SearchStrategy[str]:
    attribute = st.tuples(
        st.sampled_from(["CN", "O", "OU", "SERIALNUMBER", "C", "2.5.4.5", "Foo", "cn", ""]),
        st.text(_DN_ALPHABET, max_size=40),
    ).map(lambda pair: f"{pair[0]}={pair[1]}")
    return st.one_of(
        st.lists(attribute, max_size=6).map(", ".join),
        st.text(_DN_ALPHABET, max_size=200),
        st.just(f"CN=fuzz, SERIALNUMBER={VICTIM_SERIAL}"),
    )


def x509_sections(certificates: Certificates) -> st.SearchStrategy[Any]:
    info = st.fixed_dictionaries(
        {},
        optional={
            "subjectName": distinguished_names(),
            "issuerName": distinguished_names(),
            "sha1Thumbprint": st.text("0123456789abcdefABCDEF: ", max_size=70),
            "sha256Thumbprint": st.text("0123456789abcdefABCDEF: ", max_size=100),
            "serialNumber": st.text(max_size=40),
            "notBeforeUtc": st.text(max_size=40),
            "notAfterUtc": st.one_of(st.just("2099-01-01T00:00:00Z"), st.text(max_size=30)),
        },
    )
    certificate = st.fixed_dictionaries({"clientCertificate": certificate_fields(certificates)})
    return mostly(
        st.one_of(
            certificate,
            certificate.flatmap(
                lambda section: info.map(lambda extra: {**section, "certificateInfo": extra})
            ),
            info,
        ),
        st.one_of(
            st.fixed_dictionaries({"certificateInfo": st.one_of(st.text(), st.integers())}),
            st.just({}),
            st.recursive(
                st.none() | st.text(max_size=20), lambda inner: st.lists(inner, max_size=3)
            ),
        ),
    )


def payloads() -> st.SearchStrategy[Any]:
    claim = st.fixed_dictionaries(
        {"deviceId": st.sampled_from([VICTIM_DEVICE, "nobody-1", "bad id/", ""])},
        optional={"reason": st.text(max_size=300)},
    )
    return st.one_of(
        st.none(),
        st.fixed_dictionaries({"replacementFor": st.one_of(claim, st.text(), st.integers())}),
        st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=5),
    )


@st.composite
def allocation_bodies(draw: st.DrawFn, certificates: Certificates) -> bytes:
    """Mostly DPS-shaped requests with hostile fields; some not DPS-shaped at all."""
    own = st.just(certificates.registration_id)
    registration_id = draw(mostly(own, st.one_of(_ID, st.text(max_size=150))))
    context: dict[str, Any] = {"registrationId": registration_id}
    x509 = draw(x509_sections(certificates))
    if x509 is not None:
        context["x509"] = x509
    payload = draw(payloads())
    if payload is not None:
        context["payload"] = payload
    aim = draw(st.integers(0, 3))
    if aim == 2:  # a good certificate claiming the victim's approved replacement
        context["x509"] = {"clientCertificate": certificates.good.der_base64}
        context["payload"] = {"replacementFor": {"deviceId": VICTIM_DEVICE, "reason": "mine"}}
    elif aim == 3:  # a summary naming the victim's serial, with no certificate to contradict it
        context["x509"] = {"subjectName": f"CN={registration_id}, SERIALNUMBER={VICTIM_SERIAL}"}
    if draw(st.integers(0, 3)) == 3:
        context["currentIotHubHostName"] = draw(st.sampled_from([*DEMO_HUBS, "x" * 300, ""]))
    group_id = draw(mostly(st.just("devstack-x509"), st.sampled_from(["other-group", ""])))
    body: dict[str, Any] = {
        "enrollmentGroup": enrollment_group_record(group_id),
        "deviceRuntimeContext": context,
        "linkedHubs": draw(
            mostly(
                st.just(list(DEMO_HUBS)),
                st.one_of(
                    st.lists(st.text(max_size=40), max_size=5),
                    st.lists(st.sampled_from(DEMO_HUBS), max_size=3),
                ),
            )
        ),
    }
    if draw(st.integers(0, 19)) == 19:
        del body[draw(st.sampled_from(sorted(body)))]
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 19)) == 19:
        return draw(st.binary(max_size=500))
    if draw(st.integers(0, 19)) == 19:
        cut = draw(st.integers(0, len(raw)))
        return raw[:cut]
    return raw


def leaks(text: str) -> list[str]:
    """What of FORBIDDEN the text holds (case-insensitive for the secret names)."""
    folded = text.casefold()
    return [item for item in FORBIDDEN if item.casefold() in folded]
