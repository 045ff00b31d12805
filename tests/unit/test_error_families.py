"""One exception root for the app, and a family for every error it raises on purpose.

Deny by default: every exception class the app's packages define derives from AppError and,
unless it is a package's own base, belongs to exactly one family (app_errors). The webhook's
status codes follow the family.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest

from allocation.problem_details import problem_answer
from app_errors import (
    AppError,
    BadInput,
    Conflict,
    DependencyFailed,
    DependencyUnavailable,
    Misconfigured,
    Refused,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "allocation",
    "asset_client",
    "audit",
    "device_twin",
    "health",
    "iothub_client",
    "messages",
    "observability",
    "operator_cli",
    "policies",
    "reconciliation",
    "resilience",
    "roles",
    "storage_access",
    "sync",
)
FAMILIES = (BadInput, Refused, Conflict, DependencyUnavailable, DependencyFailed, Misconfigured)
PACKAGE_BASES = {
    "allocation.errors.AllocationError",
    "asset_client.errors.AssetError",
    "audit.errors.AuditStoreError",
    "iothub_client.errors.IotHubError",
    "resilience.queue_port.QueueError",
    "sync.errors.SyncError",
}
OUTSIDE_THE_ROOT = {
    # azure-core's pipeline passes it through only as a ClientAuthenticationError.
    "storage_access.credentials.TokenUnavailable",
    # A signal between the audit table's access, writer and reader; none lets it out.
    "audit.table_access.TableMissing",
}


def defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    modules = ["settings"] + [
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path.name != "__main__.py"
    ]
    for name in modules:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_error_the_app_defines_descends_from_the_one_root():
    errors = defined_exceptions()
    assert "allocation.errors.UnknownDevice" in errors
    outside = {
        name
        for name, error in errors.items()
        if not issubclass(error, AppError) and not name.rsplit(".", 1)[1].startswith("_")
    }
    assert outside == OUTSIDE_THE_ROOT


def test_every_error_but_a_package_base_has_exactly_one_family():
    wrong = {}
    for name, error in defined_exceptions().items():
        if not issubclass(error, AppError) or name in PACKAGE_BASES:
            continue
        if name.startswith("operator_cli."):
            continue  # the CLI answers with exit codes, not by family
        families = [family.__name__ for family in FAMILIES if issubclass(error, family)]
        if len(families) != 1:
            wrong[name] = families
    assert wrong == {}


@pytest.mark.parametrize(
    ("family", "status", "code"),
    [
        (Conflict, 409, "asset-conflict"),
        (DependencyUnavailable, 503, "dependency-unavailable"),
        (DependencyFailed, 502, "asset-system-error"),
        (AppError, 500, "internal-error"),
    ],
)
def test_the_webhook_answers_by_family(family, status, code):
    error = type("SomeNewError", (family,), {})("what went wrong, for the log only")
    answer = problem_answer(error, "req-1")
    body = json.loads(answer.body)
    assert answer.status == status
    assert body["type"].endswith(code)
    assert "what went wrong" not in answer.body.decode()
