"""Run the devstack's Entra ID stand-in as a real child process, and get tokens from it.

Import into a test module: `from tests.integration.identity_fixtures import identity_service`
(one per module), or call start_identity_service(). azure-identity's App Service flavour reads
IDENTITY_ENDPOINT and IDENTITY_HEADER from the environment (MSAL rereads them on every token
request), so managed_identity_env() keeps them set for as long as a credential is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.identity import IdentityEndpoint, TokenIssuer, load_issuer
from devstack.identity.bad_tokens import BadTokens
from devstack.processes import Child, start_child, stop_children, wait_ready

IDENTITY_MODULE = "devstack.identity"
REPO_ROOT = Path(__file__).resolve().parents[2]
USER_ASSIGNED_ID = "0b1d5e7a-9c3f-4e2a-8d6b-2f4a6c8e0a11"


@dataclass(frozen=True)
class RunningIdentity:
    child: Child
    data_dir: Path

    @property
    def endpoint(self) -> IdentityEndpoint:
        return IdentityEndpoint.from_ready_info(self.child.info)

    @property
    def public_key_file(self) -> Path:
        return self.endpoint.public_key_file

    def public_key(self) -> bytes:
        return self.public_key_file.read_bytes()

    def issuer(self) -> TokenIssuer:
        """Signs with the service's own key: for tokens the service would not hand out."""
        return load_issuer(self.data_dir)

    def bad_tokens(self) -> BadTokens:
        return BadTokens(self.issuer())


def start_identity_service(
    run_dir: Path, data_dir: Path, *, name: str = "identity", extra_args: tuple[str, ...] = ()
) -> RunningIdentity:
    child = start_child(
        name,
        IDENTITY_MODULE,
        ["--port", "0", "--data-dir", str(data_dir), *extra_args],
        run_dir=run_dir,
        cwd=REPO_ROOT,
    )
    return RunningIdentity(child=wait_ready(child), data_dir=data_dir)


@contextlib.contextmanager
def managed_identity_env(identity: RunningIdentity) -> Iterator[None]:
    """IDENTITY_ENDPOINT and IDENTITY_HEADER set as App Service sets them, then restored."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in identity.endpoint.environment().items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def identity_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIdentity]:
    base = tmp_path_factory.mktemp("identity")
    identity = start_identity_service(base / "run", base / "data")
    try:
        yield identity
    finally:
        stop_children([identity.child])


@pytest.fixture
def managed_identity(identity_service: RunningIdentity) -> Iterator[RunningIdentity]:
    """The module's identity service, with this test's environment pointing at it."""
    with managed_identity_env(identity_service):
        yield identity_service
