from pathlib import Path

import pytest

from devstack.certificates import TestCertificateAuthority
from policies import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_policy() -> Policy:
    return load_policy(REPO / "policies" / "demo.toml")


@pytest.fixture(scope="session")
def ca() -> TestCertificateAuthority:
    return TestCertificateAuthority()
