from pathlib import Path

import pytest

from allocation.policy import Policy, load_policy
from devstack.certificates import TestCertificateAuthority

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_policy() -> Policy:
    return load_policy(REPO / "policies" / "demo.toml")


@pytest.fixture(scope="session")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()
