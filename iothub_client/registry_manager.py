"""Microsoft's IoTHubRegistryManager, configured the way this project calls IoT Hub.

The SDK's own retries are off (urllib3 retries a 503 four times over ~5 s, hiding a failure
from our policy), and its session is kept alive (msrest otherwise closes it after every call:
a TLS handshake each). The SDK is imported on first call: it pulls in uamqp and costs ~0.4 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.iot.hub import IoTHubRegistryManager


def registry_manager(
    connection_string: str | None = None,
    *,
    endpoint: str | None = None,
    credential: Any = None,
    ca_bundle: str | None = None,
    timeout: float | None = None,
) -> IoTHubRegistryManager:
    """A manager for one hub: by connection string, or by `endpoint` with a token credential.

    `ca_bundle` is a CA file to trust instead of the system's; `timeout` is the SDK's
    connection timeout in seconds (its default when None). A manager holds a requests session,
    which is not meant to be shared across threads.
    """
    from azure.iot.hub import IoTHubRegistryManager

    if (connection_string is None) == (endpoint is None):
        raise ValueError("give either a connection string or an endpoint with a credential")
    if connection_string is not None:
        manager = IoTHubRegistryManager.from_connection_string(connection_string)
    else:
        manager = IoTHubRegistryManager.from_token_credential(endpoint, credential)
    config = manager.protocol.config
    config.retry_policy.retries = 0
    config.keep_alive = True
    if timeout is not None:
        config.connection.timeout = timeout
    if ca_bundle:
        config.connection.verify = ca_bundle
    return manager
