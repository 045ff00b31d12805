"""Every setting the Functions host resolves for a binding is documented as required.

The host resolves a trigger's `%NAME%` references and its `connection` itself, and fails to
index or start the function when one is unset, whatever default the app's settings declare.
The list is derived from the functions' own bindings, not written down twice.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {
    "ASSET_API_URL": "http://127.0.0.1:7080",
    "ASSET_API_KEY": "k",
    "POLICY_FILE": "policies/demo.toml",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
BINDINGS = """
import json, function_app
print(json.dumps([json.loads(raw) for f in function_app.app.get_functions()
                  for raw in f.get_raw_bindings()]))
"""
_REFERENCE = re.compile(r"%([^%]+)%")


def bound_settings() -> set[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "ASSET_"))}
    done = subprocess.run(
        [sys.executable, "-c", BINDINGS],
        env={**environ, **SETTINGS},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names: set[str] = set()
    for binding in json.loads(done.stdout):
        for key, value in binding.items():
            if not isinstance(value, str):
                continue
            names.update(_REFERENCE.findall(value))
            if key == "connection":
                names.add(value)
    return names


def test_the_bindings_resolve_these_settings():
    assert bound_settings() == {
        "AzureWebJobsStorage",
        "AUDIT_QUEUE",
        "RECONCILIATION_QUEUE",
        "TWIN_EVENTS_HUB",
        "TWIN_EVENTS_CONSUMER_GROUP",
        "IOT_HUB_EVENTS_CONNECTION",
    }


def test_the_sample_sets_and_the_readme_requires_every_setting_a_binding_resolves():
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    readme = (REPO / "docs" / "configuration.md").read_text()
    for name in sorted(bound_settings()):
        assert sample.get(name), f"local.settings.sample.json must set {name}"
        row = re.search(rf"^\| `{re.escape(name)}` \| ([^|]+) \|", readme, flags=re.MULTILINE)
        assert row is not None, f"docs/configuration.md misses {name}"
        assert row.group(1).startswith("yes (binding)"), (
            f"docs/configuration.md must mark {name} required"
        )
