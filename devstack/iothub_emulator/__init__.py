"""IoT Hub emulator: the service REST API that azure-iot-hub's IoTHubRegistryManager calls,
over HTTPS, one port per hub, with twin change notifications, throttling and fault injection.

Run it with `python -m devstack.iothub_emulator`; read where hubs listen from its ready file
with hubs_from_ready_info().
"""

from .app import create_app
from .endpoints import (
    DEFAULT_HUBS,
    HubConnectionInfo,
    HubEndpoint,
    hubs_from_ready_info,
    ready_info,
    short_name,
)
from .runtime import HubRuntime, Limits, open_hub

__all__ = [
    "DEFAULT_HUBS",
    "HubConnectionInfo",
    "HubEndpoint",
    "HubRuntime",
    "Limits",
    "create_app",
    "hubs_from_ready_info",
    "open_hub",
    "ready_info",
    "short_name",
]
