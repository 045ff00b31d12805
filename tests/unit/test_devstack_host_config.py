"""The dev host reads host.json like the Functions host, app-setting overrides included."""

import json

import pytest

from devstack.function_host.host_config import load_host_config


@pytest.fixture
def root(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {"visibilityTimeout": "00:00:30", "maxDequeueCount": 5},
                    "http": {"routePrefix": "api"},
                },
            }
        )
    )
    return tmp_path


def test_app_settings_override_host_json_keeping_types(root):
    config = load_host_config(
        root,
        {
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
            "AZUREFUNCTIONSJOBHOST__Extensions__Queues__MaxDequeueCount": "3",
            "AzureFunctionsJobHost__extensions__http__routePrefix": "v2",
            "UNRELATED": "x",
        },
    )
    queues = config.raw["extensions"]["queues"]
    assert queues["visibilityTimeout"] == "00:00:01"
    assert queues["maxDequeueCount"] == 3
    assert config.route_prefix == "v2"
    assert config.queues.max_dequeue_count == 3


def test_an_override_can_add_a_section(root):
    config = load_host_config(
        root, {"AzureFunctionsJobHost__extensions__eventHubs__maxEventBatchSize": "7"}
    )
    assert config.max_event_batch_size == 7
