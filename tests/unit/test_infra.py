"""The Bicep in infra/ against the app it deploys, checked without Azure or a Bicep compiler.

- Every .bicep file parses with pycep-parser, the version checkov itself uses, so the scan in
  `make lint-infra` sees every file.
- The Function App's app settings are what the app reads: every required setting of
  settings.AppSettings, every `%NAME%` and `connection` of the functions' bindings (derived from
  the indexed app, as tests/unit/test_required_settings.py does) is set, and nothing is set that
  neither the app, its bindings nor the Functions host reads.
- The queues and the table the Bicep creates are the ones those settings and the queue
  triggers name.
- Every checkov suppression in the Bicep says why.
- No role is granted beyond the listed data-plane roles, and none at the resource group's scope.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from settings import AppSettings, StorageSettings
from tests.unit.test_required_settings import BINDINGS, REPO, SETTINGS

INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
FUNCTION_APP_MODULE = "functionApp"
STORAGE_MODULE = "storage"

# What the Functions host itself reads, not the app: its telemetry, with Entra authentication.
HOST_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# The host's grammar for an identity-based connection `<name>__<suffix>` (storage_access.connection
# reads the storage one the same way), by the binding's service.
_IDENTITY = ("credential", "clientId", "managedIdentityResourceId")
STORAGE_SUFFIXES = (
    "blobServiceUri",
    "queueServiceUri",
    "tableServiceUri",
    "serviceUri",
    "accountName",
    *_IDENTITY,
)
EVENT_HUBS_SUFFIXES = ("fullyQualifiedNamespace", *_IDENTITY)
# What each service needs at least, identity-based: the host uses blobs, the app queues and tables.
STORAGE_NEEDS = ("blobServiceUri", "queueServiceUri", "tableServiceUri")
EVENT_HUBS_NEEDS = ("fullyQualifiedNamespace",)
_SERVICES = {
    "queueTrigger": (STORAGE_SUFFIXES, STORAGE_NEEDS),
    "eventHubTrigger": (EVENT_HUBS_SUFFIXES, EVENT_HUBS_NEEDS),
}
_REFERENCE = re.compile(r"%([^%]+)%")
_INTERPOLATION = re.compile(r"\$\{(\w+)\}")
_SUPPRESSION = re.compile(r"//\s*checkov:skip=(?P<check>CKV2?_[A-Z]+_\d+)(?::(?P<reason>.*))?$")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parsed(path: Path) -> Mapping[str, Any]:
    result: Mapping[str, Any] = BicepParser().parse(file_path=path)
    return result


def _environ_without_app_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "ASSET_"))}


@cache
def raw_bindings() -> list[dict[str, Any]]:
    """Every binding of every function, as the indexed app declares them."""
    done = subprocess.run(
        [sys.executable, "-c", BINDINGS],
        env={**_environ_without_app_settings(), **SETTINGS},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    bindings: list[dict[str, Any]] = json.loads(done.stdout)
    return bindings


@cache
def bound_settings() -> frozenset[str]:
    """What the host resolves for the bindings: each `%NAME%` and `connection`."""
    names: set[str] = set()
    for binding in raw_bindings():
        for key, value in binding.items():
            if isinstance(value, str):
                names.update(_REFERENCE.findall(value))
                if key == "connection":
                    names.add(value)
    return frozenset(names)


def resolve(expression: Any, names: Mapping[str, Any]) -> Any:
    """A bare identifier, through `names` (variables or module params), until it is not one.
    A module parameter often has its variable's name: each name is followed once."""
    seen: set[str] = set()
    while isinstance(expression, str) and expression in names and expression not in seen:
        seen.add(expression)
        expression = names[expression]
    return expression


def object_entries(expression: Any, variables: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The entries of every object literal an expression can evaluate to, through variables,
    union() and conditionals: every name a settings object can hold. Values are not entered."""
    expression = resolve(expression, variables)
    if not isinstance(expression, dict):
        return
    if set(expression) == {"function"}:
        children = expression["function"]["parameters"].values()
    elif set(expression) == {"operator"}:
        children = expression["operator"]["operands"].values()
    else:
        yield from ((key.strip("'"), value) for key, value in expression.items())
        return
    for child in children:
        yield from object_entries(child, variables)


def variables_of(path: Path) -> dict[str, Any]:
    return {name: var["value"] for name, var in parsed(path)["variables"].items()}


def function_app_settings() -> dict[str, Any]:
    """The app settings the Function App gets: name -> its expression (every branch merged)."""
    configs = [
        resource["config"]
        for resource in parsed(FUNCTION_APP)["resources"].values()
        if resource["type"] == "Microsoft.Web/sites/config"
        and resource["config"]["name"] == "appsettings"
    ]
    assert len(configs) == 1, "the Function App has one appsettings resource"
    return dict(object_entries(configs[0]["properties"], variables_of(FUNCTION_APP)))


def main_value(setting: str) -> Any:
    """A setting's value as main.bicep gives it: through the module's parameter to main's
    variable (only settings fed that way resolve to a literal)."""
    params = parsed(MAIN)["modules"][FUNCTION_APP_MODULE]["config"]["params"]
    return resolve(resolve(function_app_settings()[setting], params), variables_of(MAIN))


def interpolated(text: str, variables: Mapping[str, Any]) -> str:
    return _INTERPOLATION.sub(lambda match: str(variables[match[1]]), text)


def connection_settings() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each binding connection: its allowed suffixes and the ones it needs, by its service."""
    connections: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for binding in raw_bindings():
        if "connection" in binding:
            connections[binding["connection"]] = _SERVICES[binding["type"]]
    return connections


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: str(path.relative_to(INFRA)))
def test_every_bicep_file_parses_as_checkov_reads_it(path: Path):
    assert parsed(path)["resources"] or parsed(path)["modules"]


def test_infra_has_the_main_template_and_its_modules():
    main = parsed(MAIN)
    assert main["globals"]["scope"]["value"] == "resourceGroup"
    local_modules = {INFRA / module["detail"]["path"] for module in main["modules"].values()}
    assert local_modules == set(bicep_files()) - {MAIN}, "every module is used, and exists"


def test_the_function_app_sets_every_setting_the_app_requires():
    settings = set(function_app_settings())
    required = {
        str(field.validation_alias)
        for field in AppSettings.model_fields.values()
        if field.is_required()
    }
    assert required, "AppSettings declares required settings"
    assert required <= settings, f"not set by infra/: {sorted(required - settings)}"


def test_the_function_app_sets_every_setting_a_binding_resolves():
    settings = set(function_app_settings())
    connections = connection_settings()
    for name in sorted(bound_settings()):
        if name in connections:
            _, needs = connections[name]
            missing = sorted({f"{name}__{suffix}" for suffix in needs} - settings)
            assert name in settings or not missing, f"not set by infra/: {missing}"
        else:
            assert name in settings, f"binding setting {name} is not set by infra/"


def test_the_function_app_sets_nothing_unused():
    allowed = {str(field.validation_alias) for field in AppSettings.model_fields.values()}
    allowed |= bound_settings() | HOST_SETTINGS
    for name, (suffixes, _) in connection_settings().items():
        allowed |= {f"{name}__{suffix}" for suffix in suffixes}
    unused = set(function_app_settings()) - allowed
    assert not unused, f"set by infra/ but read by nothing: {sorted(unused)}"


def test_identity_based_connections_name_the_user_assigned_identity():
    settings = function_app_settings()
    for name in connection_settings():
        if f"{name}__credential" in settings:
            assert f"{name}__clientId" in settings, f"{name} would use a system identity"
    assert "AZURE_CLIENT_ID" in settings, "the app's own token calls need the identity too"


def test_the_asset_api_is_reached_by_exactly_one_of_audience_or_key():
    variables = variables_of(FUNCTION_APP)
    choice = variables["assetApiAuth"]["operator"]
    assert choice["type"] == "conditional"
    branches = [
        dict(object_entries(choice["operands"][side], variables))
        for side in ("true_value", "false_value")
    ]
    assert [set(branch) for branch in branches] == [{"ASSET_API_KEY"}, {"ASSET_API_AUDIENCE"}]
    key = resolve(branches[0]["ASSET_API_KEY"], variables)
    assert key.startswith("@Microsoft.KeyVault("), "the key is a Key Vault reference"


def test_storage_names_are_the_app_defaults():
    for setting, field in (
        ("RECONCILIATION_QUEUE", "reconciliation_queue"),
        ("DEAD_LETTER_QUEUE", "dead_letter_queue"),
        ("AUDIT_QUEUE", "audit_queue"),
        ("AUDIT_TABLE", "audit_table"),
    ):
        assert main_value(setting) == StorageSettings.model_fields[field].default, setting


def test_the_queues_the_triggers_read_and_the_audit_table_exist():
    variables = variables_of(MAIN)
    storage = parsed(MAIN)["modules"][STORAGE_MODULE]["config"]["params"]
    created = {
        interpolated(resolve(queue, variables), variables) for queue in storage["queueNames"]
    }
    for binding in raw_bindings():
        if binding["type"] == "queueTrigger":
            queue = _REFERENCE.sub(lambda match: str(main_value(match[1])), binding["queueName"])
            assert queue in created, f"{binding['queueName']} ({queue}) is not created"
    assert main_value("DEAD_LETTER_QUEUE") in created
    assert resolve(storage["auditTableName"], variables) == main_value("AUDIT_TABLE")


def test_every_checkov_suppression_says_why():
    found = 0
    for path in bicep_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "checkov" not in line:
                continue
            match = _SUPPRESSION.search(line.strip())
            if match is None:
                continue
            found += 1
            reason = (match["reason"] or "").strip()
            assert len(reason) >= 20, f"{path.name}:{number}: {match['check']} needs a reason"
    assert found, "the suppressions are found (the pattern matches the files' syntax)"


# Every role the template may grant (ids from Microsoft's "Azure built-in roles" page): the app's
# identity, the hubs' identity, the operator running azd and the asset system's publisher.
GRANTABLE_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "4ea46cd5-c1b2-4a8e-910b-273211f9ce47": "IoT Hub Registry Contributor",
    "494bdba2-168f-4f31-a0a1-191d2f7c028c": "IoT Hub Twin Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "dfce44e4-17b7-4bd1-a6d1-04996ec95633": "Device Provisioning Service Data Contributor",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def test_only_the_listed_data_roles_are_granted():
    found = {guid.lower() for path in bicep_files() for guid in _GUID.findall(path.read_text())}
    assert found, "the role ids are found"
    assert found <= set(GRANTABLE_ROLES), (
        f"not a role the template may grant: {found - set(GRANTABLE_ROLES)}"
    )


def test_every_role_assignment_is_scoped_to_one_resource():
    assignments = 0
    for path in bicep_files():
        for name, resource in parsed(path)["resources"].items():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            assignments += 1
            config = resource["config"]
            body = config.get("config", config)  # a loop or a condition wraps the body
            assert "scope" in body, f"{path.name}: {name} would apply to the whole resource group"
    assert assignments >= 8


# What the postdeploy hook's commands do as the operator running azd (docs/deploy-azure.md,
# "What it creates"): enrollment groups on DPS; the smoke's device and twin on each hub; the
# audit table (and dead letters) in storage; the asset API key in the vault.
OPERATOR_MODULES = {
    "dps": "dps.bicep",
    "iotHubModules": "iot-hub.bicep",
    "storage": "storage.bicep",
    "keyVault": "key-vault.bicep",
}


def test_the_operator_is_granted_what_the_hook_commands_need_on_each_resource():
    modules = parsed(MAIN)["modules"]
    for module_name, file_name in OPERATOR_MODULES.items():
        config = modules[module_name]["config"]
        params = config.get("config", config)["params"]
        assert params.get("operatorPrincipalId") == "operatorPrincipalId", (
            f"main.bicep does not hand {module_name} the operator's principal id"
        )
        grants = [
            resource
            for resource in parsed(INFRA / "modules" / file_name)["resources"].values()
            if resource["type"] == "Microsoft.Authorization/roleAssignments"
            and resource["config"].get("config", resource["config"])["properties"]["principalId"]
            == "operatorPrincipalId"
        ]
        assert grants, f"{file_name} grants the operator nothing"
