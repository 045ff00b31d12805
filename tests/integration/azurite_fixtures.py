"""Azurite (queue + table) as real child processes on free ports, one for the whole session.

Import into a test module: `from tests.integration.azurite_fixtures import azurite`. Every
module that imports it gets the same Azurite (started on first use, stopped when the session
ends), so tests share one account: each uses its own queue or table (unique_name()).
"""

from __future__ import annotations

import uuid

import pytest

from devstack.azurite import AzuriteChild, start_azurite
from devstack.processes import stop_children

_RUNNING = pytest.StashKey[AzuriteChild]()


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
