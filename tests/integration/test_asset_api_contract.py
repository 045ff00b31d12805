"""The asset API's contract, checked as an adapter's authors check theirs (docs/asset-api.md).

schemathesis runs asset_client/openapi.yaml against the reference asset service over real
loopback HTTP with asset_client/schemathesis.toml: every check, schema-valid and
schema-violating data, all four phases (examples, coverage, fuzzing, stateful), deterministic
generation. Anything it finds is a place where the document and the service disagree, so the
test fails and lists each finding with a curl command that reproduces it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from devstack.processes import Child, stop_children
from tests.integration.asset_service_fixtures import REPO_ROOT, WRITE_KEY, start_asset_service

OPENAPI_FILE = REPO_ROOT / "asset_client" / "openapi.yaml"
CONFIG_FILE = REPO_ROOT / "asset_client" / "schemathesis.toml"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    title: str
    message: str
    response: str
    curl: str

    def __str__(self) -> str:
        return (
            f"{self.operation}: {self.title} [{self.check}]\n  {self.message}\n"
            f"  answered {self.response}\n  {self.curl}"
        )


@dataclass(frozen=True)
class ContractRun:
    findings: list[Finding]
    errors: list[str]
    scenarios: int


@pytest.fixture
def contract_service(tmp_path: Path) -> Iterator[Child]:
    """A fresh seeded service: the run writes, and its stateful phase starts from the seed."""
    child = start_asset_service(tmp_path / "run", tmp_path / "data")
    try:
        yield child
    finally:
        stop_children([child])


def run_contract(base_url: str) -> ContractRun:
    config = schemathesis.Config.from_path(CONFIG_FILE)
    schema = schemathesis.openapi.from_path(OPENAPI_FILE, config=config)
    schema.config.update(base_url=base_url, headers={"x-api-key": WRITE_KEY})
    findings: list[Finding] = []
    errors: list[str] = []
    scenarios = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
            scenarios += 1
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        case = event.recorder.cases[case_id].value
                        response = event.recorder.find_response(case_id=case_id)
                        answered = (
                            "nothing"
                            if response is None
                            else f"{response.status_code} {response.text_lossy()[:300]}"
                        )
                        findings.append(
                            Finding(
                                operation=failure.operation or event.recorder.label,
                                check=check.name,
                                title=failure.title,
                                message=failure.message,
                                response=answered,
                                curl=check.failure_info.code_sample or case.as_curl_command(),
                            )
                        )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            errors.append(repr(event.exception))
    return ContractRun(findings=findings, errors=errors, scenarios=scenarios)


def test_the_reference_service_keeps_the_openapi_contract(contract_service: Child) -> None:
    run = run_contract(contract_service.url)
    assert not run.errors, "\n".join(run.errors)
    assert run.scenarios > 0, "schemathesis ran no test"
    unique = sorted({str(finding) for finding in run.findings})
    assert not unique, f"{len(unique)} contract finding(s):\n\n" + "\n\n".join(unique)
