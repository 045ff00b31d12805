"""Azurite as real child processes on free ports, one of each kind for the whole session.

Import into a test module: `from tests.integration.azurite_fixtures import azurite` (HTTP,
queue + table, the account key) or `azurite_oauth` (HTTPS with the devstack's TLS, OAuth on,
blob too: for keyless clients; trust its `ca_cert`). Every module that imports one gets the
same Azurite (started on first use, stopped when the session ends), so tests share one
account: each uses its own queue, table or container (unique_name()).
"""

from __future__ import annotations

import uuid

import pytest

from devstack.azurite import AzuriteChild, AzuriteHttps, start_azurite
from devstack.processes import stop_children
from devstack.tls import ensure_tls

_RUNNING = pytest.StashKey[AzuriteChild]()
_RUNNING_OAUTH = pytest.StashKey[AzuriteChild]()


def unique_name(prefix: str) -> str:
    """A name no other test uses, valid for a queue and (prefix of letters) for a table."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def azurite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AzuriteChild:
    """The session's Azurite, with its data in a temporary directory.

    A fixture imported into several modules is defined once per module, so the running
    instance lives in the session's stash rather than in the fixture.
    """
    config = request.config
    running = config.stash.get(_RUNNING, None)
    if running is None:
        base = tmp_path_factory.mktemp("azurite")
        running = start_azurite(base / "run", base / "data", queue_port=0, table_port=0)
        config.stash[_RUNNING] = running
        config.add_cleanup(lambda: stop_children(running.children))
    return running


@pytest.fixture(scope="session")
def azurite_oauth(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AzuriteChild:
    """The session's HTTPS Azurite taking bearer tokens, with blob, queue and table."""
    config = request.config
    running = config.stash.get(_RUNNING_OAUTH, None)
    if running is None:
        base = tmp_path_factory.mktemp("azurite-oauth")
        https = AzuriteHttps.from_tls(ensure_tls(base))
        running = start_azurite(
            base / "run", base / "data", queue_port=0, table_port=0, blob_port=0, https=https
        )
        config.stash[_RUNNING_OAUTH] = running
        config.add_cleanup(lambda: stop_children(running.children))
    return running
