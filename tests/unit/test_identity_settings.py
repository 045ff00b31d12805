"""The app as an Azure user sets it up keyless: identity-based settings only, no key anywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYLESS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage__accountName": "contosoonboarding",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
    "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "ASSET_API_URL": "https://assets.contoso.example/api",
    "ASSET_API_AUDIENCE": "api://contoso-assets",
    "POLICY_FILE": "policies/demo.toml",
    "IOT_HUB_MANAGED_IDENTITY_HUBS": "hub-us-east.azure-devices.net,hub-eu-west.azure-devices.net",
    "IOT_HUB_EVENTS_CONNECTION__fullyQualifiedNamespace": "contoso.servicebus.windows.net",
    "TWIN_EVENTS_HUB": "twin-changes",
    "TWIN_EVENTS_CONSUMER_GROUP": "onboarding",
    "RECONCILIATION_QUEUE": "reconciliation",
    "DEAD_LETTER_QUEUE": "dead-letters",
    "AUDIT_QUEUE": "audit",
}
INDEX = """
import json, function_app, bootstrap
settings, _ = bootstrap.load_configuration()
print(json.dumps({
    "functions": sorted(f.get_function_name() for f in function_app.app.get_functions()),
    "storage": settings.storage.describe(),
    "identityBased": settings.storage.identity_based,
}))
"""
KEY_WORDS = ("AccountKey", "SharedAccessKey", "ASSET_API_KEY", "IOT_HUB_CONNECTION_STRINGS")


def run_index(settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AzureWebJobs", "ASSET_", "IOT_HUB", "AZURE_"))
    }
    return subprocess.run(
        [sys.executable, "-c", INDEX],
        env={**environ, **settings},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_identity_only_settings_import_the_app_and_index_every_function():
    assert not any(word in json.dumps(KEYLESS) for word in KEY_WORDS)
    done = run_index(KEYLESS)
    assert done.returncode == 0, done.stderr
    indexed = json.loads(done.stdout)
    assert indexed["functions"] == [
        "allocate",
        "asset_changed",
        "audit_writer",
        "backlog_probe",
        "health",
        "pending_sweep",
        "reconcile",
        "reconciliation_poison",
        "twin_changed",
    ]
    assert indexed["identityBased"] is True
    assert "https://contosoonboarding.queue.core.windows.net" in indexed["storage"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"AzureWebJobsStorage__accountName": ""}, "AzureWebJobsStorage"),
        ({"ASSET_API_URL": "http://assets.contoso.example/api"}, "ASSET_API_URL"),
        ({"ASSET_API_KEY": "k3y"}, "ASSET_API_KEY and ASSET_API_AUDIENCE"),
        ({"AzureWebJobsStorage__credential": "password"}, "AzureWebJobsStorage__credential"),
    ],
)
def test_a_wrong_identity_setting_stops_the_app_naming_it(change, named):
    done = run_index({**KEYLESS, **change})
    assert done.returncode != 0
    assert named in done.stderr
    assert "k3y" not in done.stderr
