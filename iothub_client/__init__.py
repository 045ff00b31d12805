"""The IoT Hub service API as the app uses it: twins and device identities, per hub.

The port (IotHubRegistry) is what services depend on; the adapter runs Microsoft's
azure-iot-hub SDK in worker threads, with the SDK's own retries off so our policy decides.
"""

from iothub_client.connections import HubConnection, HubConnections, parse_connection_string
from iothub_client.errors import (
    DeviceNotFound,
    HubAccessDenied,
    HubRequestRejected,
    HubThrottled,
    HubUnavailable,
    IotHubError,
    TwinPreconditionFailed,
    UnknownHub,
)
from iothub_client.hub_names import HubNames
from iothub_client.models import DeviceRecord, Twin, TwinPatch
from iothub_client.port import IotHubRegistry
from iothub_client.query_literals import string_literal

__all__ = [
    "DeviceNotFound",
    "DeviceRecord",
    "HubAccessDenied",
    "HubConnection",
    "HubConnections",
    "HubNames",
    "HubRequestRejected",
    "HubThrottled",
    "HubUnavailable",
    "IotHubError",
    "IotHubRegistry",
    "Twin",
    "TwinPatch",
    "TwinPreconditionFailed",
    "UnknownHub",
    "parse_connection_string",
    "string_literal",
]
