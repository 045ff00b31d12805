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
- The workbook and the alert rules read only the app's metrics (APP_METRICS), their attributes
  and the queues main.bicep creates; the workbook shows every metric; each alert has its
  threshold parameter, fed from main.parameters.json, and notifies the action group parameter.
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

from observability.metric_catalog import METRICS
from observability.trace_attributes import ALLOCATION_SPAN
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


# The app's metrics as Application Insights stores them (customMetrics): name -> attributes, the
# keys of customDimensions. The app's own catalog, so a renamed metric breaks these checks.
APP_METRICS: dict[str, frozenset[str]] = METRICS
ALLOCATION_OUTCOMES = frozenset({"allocated", "fallback", "refused", "failed"})
WORKBOOK = INFRA / "modules" / "workbook.bicep"
ALERTS = INFRA / "modules" / "alerts.bicep"
MONITORING = INFRA / "modules" / "monitoring.bicep"
PARAMETERS = INFRA / "main.parameters.json"
# Each rule: its threshold, a literal or the alerts module's parameter; then main.bicep's
# parameter feeding that one, and the azd environment variable feeding main's.
ALERT_THRESHOLDS: dict[str, Any] = {
    "dead-letters": 0,
    "breaker-open": 0,
    "fallbacks": ("fallbackThreshold", "alertFallbackThreshold", "ALERT_FALLBACK_THRESHOLD"),
    "backlog-age": (
        "backlogAgeThresholdSeconds",
        "alertBacklogAgeSeconds",
        "ALERT_BACKLOG_AGE_SECONDS",
    ),
}
BREAKER_RULE = "breaker-open"
_COMMENT = re.compile(r"//.*$", re.MULTILINE)
_NAME_FILTER = re.compile(r"\bname\s*(?:==|\bin\b)\s*(\([^)]*\)|\"[^\"]*\")")
_COMPARED = re.compile(r"(?:==|!=|=~|\bin\b)\s*(\([^)]*\)|\"[^\"]*\")")
_QUOTED = re.compile(r"\"([^\"]*)\"")
_DIMENSION = re.compile(r"customDimensions\[\s*\"([^\"]+)\"\s*\]")
_FIRST_TABLE = re.compile(r"^\s*(?:let\s+\w+\s*=\s*)?(\w+)\s*(?:\||$)", re.MULTILINE)
_KQL_WINDOW = re.compile(r"let\s+window\s*=\s*(\d+)m\s*;")
_ISO_MINUTES = re.compile(r"PT(\d+)M")


def accessor(expression: Any) -> Any:
    """A property access as Bicep writes it (`monitoring.outputs.id`); anything else as is."""
    if isinstance(expression, dict) and set(expression) == {"operator"}:
        operator = expression["operator"]
        if operator["type"] == "property_accessor":
            operands = operator["operands"]
            return f"{accessor(operands['operand_1'])}.{accessor(operands['operand_2'])}"
    return expression


def loaded(expression: Any, module: Path) -> str:
    """The text of the file a loadTextContent or loadJsonContent call reads."""
    function = expression["function"]
    assert function["type"] in {"load_text_content", "load_json_content"}, function["type"]
    path: str = function["parameters"]["file_path"]
    return (module.parent / path).read_text()


def workbook_resource() -> Mapping[str, Any]:
    found: list[Mapping[str, Any]] = [
        resource["config"]
        for resource in parsed(WORKBOOK)["resources"].values()
        if resource["type"] == "Microsoft.Insights/workbooks"
    ]
    assert len(found) == 1, "workbook.bicep holds one workbook"
    return found[0]


def workbook_content() -> dict[str, Any]:
    """The workbook's serializedData: string() of a variable that unions the JSON file."""
    serialized = workbook_resource()["properties"]["serializedData"]["function"]
    assert serialized["type"] == "string"
    content = resolve(serialized["parameters"]["value_to_convert"], variables_of(WORKBOOK))
    union = content["function"]
    assert union["type"] == "union"
    document: dict[str, Any] = json.loads(loaded(union["parameters"]["arg_1"], WORKBOOK))
    return document


def workbook_queries() -> dict[str, str]:
    """The workbook's query tiles: step name -> KQL."""
    return {
        item["name"]: item["content"]["query"]
        for item in workbook_content()["items"]
        if item["type"] == 3
    }


def alert_rules_resource() -> Mapping[str, Any]:
    found: list[Mapping[str, Any]] = [
        resource["config"]
        for resource in parsed(ALERTS)["resources"].values()
        if resource["type"] == "Microsoft.Insights/scheduledQueryRules"
    ]
    assert len(found) == 1, "alerts.bicep makes its rules in one loop"
    return found[0]


def alert_rules() -> dict[str, Mapping[str, Any]]:
    """Each rule of the loop: its name -> its own properties (the loop adds the shared ones)."""
    loop = alert_rules_resource()["loop_type"]["detail"]
    rules = variables_of(ALERTS)[loop["array_name"]]
    return {rule["name"]: rule["properties"] for rule in rules}


def alert_queries() -> dict[str, str]:
    return {
        name: loaded(properties["criteria"]["allOf"][0]["query"], ALERTS)
        for name, properties in alert_rules().items()
    }


def shared_alert_properties() -> Mapping[str, Any]:
    """What the loop gives every rule: union(rule.properties, {these})."""
    union = alert_rules_resource()["config"]["properties"]["function"]
    assert union["type"] == "union"
    assert accessor(union["parameters"]["arg_1"]) == "rule.properties"
    shared: Mapping[str, Any] = union["parameters"]["arg_2"]
    return shared


def created_queues() -> set[str]:
    variables = variables_of(MAIN)
    storage = parsed(MAIN)["modules"][STORAGE_MODULE]["config"]["params"]
    return {interpolated(resolve(queue, variables), variables) for queue in storage["queueNames"]}


def every_query() -> dict[str, str]:
    return {
        **{f"workbook:{name}": query for name, query in workbook_queries().items()},
        **{f"alert:{name}": query for name, query in alert_queries().items()},
    }


def metrics_named(query: str) -> set[str]:
    """The names a query filters on (`name == "…"`, `name in (…)`), comments left out."""
    code = _COMMENT.sub("", query)
    return {
        literal for match in _NAME_FILTER.finditer(code) for literal in _QUOTED.findall(match[1])
    }


def test_the_workbook_is_shared_and_linked_to_application_insights():
    workbook = workbook_resource()
    assert workbook["kind"] == "shared"
    assert workbook["properties"]["category"] == "workbook"
    assert workbook["properties"]["sourceId"] == "applicationInsightsId"
    outputs = parsed(MONITORING)["outputs"]
    assert accessor(outputs["applicationInsightsId"]["value"]) == "appInsights.id"
    params = parsed(MAIN)["modules"]["workbook"]["config"]["params"]
    assert accessor(params["applicationInsightsId"]) == "monitoring.outputs.applicationInsightsId"


def test_the_workbook_tiles_follow_its_time_range():
    items = workbook_content()["items"]
    names = [item["name"] for item in items]
    assert len(names) == len(set(names)), "the portal needs unique step names"
    parameters = {
        parameter["name"]
        for item in items
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
    }
    tiles = [item["content"] for item in items if item["type"] == 3]
    assert tiles, "the workbook has query tiles"
    for tile in tiles:
        assert tile["timeContextFromParameter"] in parameters, tile["title"]
        assert tile["resourceType"] == "microsoft.insights/components", tile["title"]


def test_the_workbook_shows_every_metric():
    shown = set().union(*(metrics_named(query) for query in workbook_queries().values()))
    assert set(APP_METRICS) <= shown, f"no tile shows {sorted(set(APP_METRICS) - shown)}"


@pytest.mark.parametrize("source", sorted(every_query()))
def test_every_query_reads_only_the_app_metrics_and_their_attributes(source: str):
    query = every_query()[source]
    code = _COMMENT.sub("", query)
    named = metrics_named(query)
    assert named, "the query filters on a metric or span name"
    tables = set(_FIRST_TABLE.findall(code)) & {"customMetrics", "requests"}
    if tables == {"requests"}:
        assert named == {ALLOCATION_SPAN}, "requests holds the allocation span"
        return
    assert tables == {"customMetrics"}, f"reads {tables}"
    assert named <= set(APP_METRICS), f"not an app metric: {sorted(named - set(APP_METRICS))}"
    attributes = set().union(*(APP_METRICS[name] for name in named))
    keys = set(_DIMENSION.findall(code))
    assert keys <= attributes, f"not an attribute of {sorted(named)}: {sorted(keys - attributes)}"
    known = set(APP_METRICS) | ALLOCATION_OUTCOMES | created_queues()
    compared = {
        literal for match in _COMPARED.finditer(code) for literal in _QUOTED.findall(match[1])
    }
    assert compared <= known, f"compared with unknown values: {sorted(compared - known)}"


def test_the_alert_rules_are_the_four_expected_on_application_insights():
    assert set(alert_rules()) == set(ALERT_THRESHOLDS)
    resource = alert_rules_resource()["config"]
    assert resource["kind"] == "LogAlert"
    shared = shared_alert_properties()
    assert shared["scopes"] == ["applicationInsightsId"]
    assert shared["enabled"] is True
    params = parsed(MAIN)["modules"]["alerts"]["config"]["params"]
    assert accessor(params["applicationInsightsId"]) == "monitoring.outputs.applicationInsightsId"
    for name, properties in alert_rules().items():
        assert not {"scopes", "actions", "enabled"} & set(properties), f"{name} overrides"
        assert len(properties["criteria"]["allOf"]) == 1, name


def azd_variable(main_param: str) -> tuple[str, str]:
    """The environment variable and default main.parameters.json feeds a main.bicep parameter
    with (`${ENV=default}`)."""
    value = json.loads(PARAMETERS.read_text())["parameters"][main_param]["value"]
    match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", value)
    assert match, f"{main_param} is not read from the azd environment"
    return match[1], match[2] or ""


@pytest.mark.parametrize("rule", sorted(ALERT_THRESHOLDS))
def test_each_alert_has_its_threshold_fed_from_the_azd_environment(rule: str):
    condition = alert_rules()[rule]["criteria"]["allOf"][0]
    expected = ALERT_THRESHOLDS[rule]
    if not isinstance(expected, tuple):
        assert condition["threshold"] == expected
        return
    module_param, main_param, env_name = expected
    assert condition["threshold"] == module_param
    assert parsed(ALERTS)["parameters"][module_param]["type"] == "int"
    assert parsed(MAIN)["modules"]["alerts"]["config"]["params"][module_param] == main_param
    default = parsed(MAIN)["parameters"][main_param]["default"]
    assert isinstance(default, int)
    assert azd_variable(main_param) == (env_name, str(default)), "with main's own default"


def test_the_alerts_notify_the_action_group_parameter_when_given():
    assert shared_alert_properties()["actions"]["actionGroups"] == "actionGroups"
    choice = variables_of(ALERTS)["actionGroups"]["operator"]
    assert choice["type"] == "conditional"
    test = choice["operands"]["condition"]["function"]
    assert test == {"type": "empty", "parameters": {"item_to_test": "actionGroupId"}}
    assert choice["operands"]["true_value"] == []
    assert choice["operands"]["false_value"] == ["actionGroupId"]
    assert parsed(ALERTS)["parameters"]["actionGroupId"]["default"] == ""
    params = parsed(MAIN)["modules"]["alerts"]["config"]["params"]
    assert params["actionGroupId"] == "alertActionGroupId"
    assert parsed(MAIN)["parameters"]["alertActionGroupId"]["default"] == ""
    assert azd_variable("alertActionGroupId") == ("ALERT_ACTION_GROUP_ID", "")


def test_the_breaker_alert_judges_five_minutes_of_reports():
    properties = alert_rules()[BREAKER_RULE]
    assert properties["windowSize"] == "PT5M"
    window = _KQL_WINDOW.search(alert_queries()[BREAKER_RULE])
    assert window, "the query names its window (let window = …m;)"
    assert f"PT{window[1]}M" == properties["windowSize"], "the query's window is the rule's"
    # The query looks back from each instance's latest report, itself up to a window old.
    override = _ISO_MINUTES.fullmatch(properties["overrideQueryTimeRange"])
    assert override, "the rule reads more than its window"
    assert int(override[1]) >= 2 * int(window[1])
