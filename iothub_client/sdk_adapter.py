"""IotHubRegistry on Microsoft's azure-iot-hub SDK (IoTHubRegistryManager).

The SDK is synchronous (msrest over requests), so each call runs in a worker thread. It is
imported on first use: it pulls in uamqp and costs ~0.4 s, which cold start should not pay.
Its own retries are off (urllib3 retries a 503 four times over ~5 s): our policy decides.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from iothub_client.connections import HubConnection, HubConnections
from iothub_client.errors import (
    DeviceNotFound,
    HubAccessDenied,
    HubRequestRejected,
    HubThrottled,
    HubUnavailable,
    TwinPreconditionFailed,
    UnknownHub,
)
from iothub_client.models import DeviceRecord, Twin, TwinPatch
from observability.resilience_metrics import ResilienceMetrics, global_resilience_metrics

T = TypeVar("T")
_METADATA_KEYS = ("$metadata", "$version")
# IoT Hub serves at most 1000 twins a page; it may serve fewer, hence the continuation loop.
_QUERY_PAGE_MAX = 1000


class SdkIotHubRegistry:
    def __init__(
        self,
        connections: HubConnections,
        *,
        timeout_seconds: float,
        ca_bundle: str | None = None,
        credential_factory: Callable[[], Any] | None = None,
        metrics: ResilienceMetrics | None = None,
    ) -> None:
        """`metrics`: where 429s are counted (the process's OpenTelemetry instruments unless
        given)."""
        self._connections = connections
        self._timeout = timeout_seconds
        self._ca_bundle = ca_bundle
        self._credential_factory = credential_factory
        self._credential: Any = None
        self._metrics = metrics or global_resilience_metrics()
        # requests sessions are not safe to share across threads: one manager per thread and hub.
        self._local = threading.local()

    async def get_twin(self, hub: str, device_id: str) -> Twin:
        raw = await self._run(
            hub, "get_twin", f"GET twin {device_id}", lambda rm: rm.get_twin(device_id)
        )
        return _twin(hub, raw)

    async def update_twin(
        self, hub: str, device_id: str, patch: TwinPatch, *, etag: str | None
    ) -> Twin:
        def call(rm: Any) -> Any:
            from azure.iot.hub.models import Twin as SdkTwin
            from azure.iot.hub.models import TwinProperties

            properties = (
                TwinProperties(desired=patch.desired) if patch.desired is not None else None
            )
            return rm.update_twin(device_id, SdkTwin(tags=patch.tags, properties=properties), etag)

        return _twin(hub, await self._run(hub, "update_twin", f"PATCH twin {device_id}", call))

    async def get_device(self, hub: str, device_id: str) -> DeviceRecord:
        raw = await self._run(
            hub, "get_device", f"GET device {device_id}", lambda rm: rm.get_device(device_id)
        )
        return _device(hub, raw)

    async def disable_device(self, hub: str, device_id: str) -> DeviceRecord:
        return await self._set_status(hub, device_id, "disabled")

    async def enable_device(self, hub: str, device_id: str) -> DeviceRecord:
        return await self._set_status(hub, device_id, "enabled")

    async def _set_status(self, hub: str, device_id: str, status: str) -> DeviceRecord:
        def call(rm: Any) -> Any:
            device = rm.get_device(device_id)
            if device.status == status:
                return device
            device.status = status
            # Through the protocol layer, so the device keeps its own authentication mechanism.
            return rm.protocol.devices.create_or_update_identity(
                device_id, device, _quoted(device.etag)
            )

        verb = "enable" if status == "enabled" else "disable"
        return _device(
            hub, await self._run(hub, f"{verb}_device", f"{verb} device {device_id}", call)
        )

    async def query_twins(self, hub: str, query: str, *, limit: int = 1000) -> list[Twin]:
        if limit < 1:
            raise ValueError("limit must be at least 1")

        def call(rm: Any) -> list[Any]:
            from azure.iot.hub.models import QuerySpecification

            specification = QuerySpecification(query=query)
            items: list[Any] = []
            continuation: str | None = None
            while len(items) < limit:
                page_size = min(limit - len(items), _QUERY_PAGE_MAX)
                page = rm.query_iot_hub(specification, continuation, str(page_size))
                if page.type not in (None, "twin"):
                    # A projection or aggregate answers raw rows, which are not twins.
                    raise HubRequestRejected(
                        f"{hub}: query twins answered rows that are not twins;"
                        " only queries selecting whole twins are supported",
                        400,
                    )
                items.extend(page.items or [])
                if not page.continuation_token or page.continuation_token == continuation:
                    break
                continuation = page.continuation_token
            return items[:limit]

        # The query text stays out of errors: callers may build it from device data.
        raw = await self._run(hub, "query_twins", "query twins", call)
        return [_twin(hub, item) for item in raw]

    async def delete_device(self, hub: str, device_id: str, *, etag: str | None = None) -> None:
        await self._run(
            hub,
            "delete_device",
            f"DELETE device {device_id}",
            lambda rm: rm.delete_device(device_id, etag),
        )

    async def _run(self, hub: str, operation: str, what: str, call: Callable[[Any], T]) -> T:
        """`operation`: the method's name, a bounded metric attribute; `what`: for the error."""
        connection = self._connection(hub)
        # to_thread copies the context: the SDK's HTTP spans (requests) join the caller's trace.
        return await asyncio.to_thread(self._call_in_thread, connection, operation, what, call)

    def _connection(self, hub: str) -> HubConnection:
        try:
            return self._connections[hub]
        except KeyError:
            raise UnknownHub(f"no IoT Hub connection is configured for {hub}") from None

    def _call_in_thread(
        self, connection: HubConnection, operation: str, what: str, call: Callable[[Any], T]
    ) -> T:
        from azure.core.exceptions import ClientAuthenticationError
        from msrest.exceptions import ClientRequestError, HttpOperationError

        try:
            return call(self._manager(connection))
        except HttpOperationError as exc:
            error = _mapped(exc, f"{connection.hub}: {what}")
            if isinstance(error, HubThrottled):
                self._metrics.throttled(connection.hub, operation)
            if isinstance(error, HubAccessDenied) and connection.auth == "managedIdentity":
                error = HubAccessDenied(
                    f"{error} (the hub refused the app's token: grant its identity IoT Hub "
                    "Registry Contributor and Twin Contributor on the hub)"
                )
            raise error from exc
        except ClientRequestError as exc:
            raise HubUnavailable(f"{connection.hub}: {what} failed: {type(exc).__name__}") from exc
        except ClientAuthenticationError as exc:
            # The credential's own text may carry endpoint details: only its class is kept.
            raise HubAccessDenied(
                f"{connection.hub}: no Entra ID token for IoT Hub ({type(exc).__name__}); the hub "
                "is identity-based (IOT_HUB_MANAGED_IDENTITY_HUBS): check the app's managed "
                "identity (AZURE_CLIENT_ID for a user-assigned one)"
            ) from None

    def _manager(self, connection: HubConnection) -> Any:
        managers: dict[str, Any] = self._local.__dict__.setdefault("managers", {})
        manager = managers.get(connection.hub)
        if manager is None:
            from iothub_client.registry_manager import registry_manager

            if connection.auth == "connectionString":
                manager = registry_manager(
                    connection.connection_string, ca_bundle=self._ca_bundle, timeout=self._timeout
                )
            else:
                manager = registry_manager(
                    endpoint=connection.endpoint,
                    credential=self._token_credential(),
                    ca_bundle=self._ca_bundle,
                    timeout=self._timeout,
                )
            managers[connection.hub] = manager
        return manager

    def _token_credential(self) -> Any:
        if self._credential is None:
            if self._credential_factory is None:
                raise HubAccessDenied("managed identity is configured but no credential exists")
            self._credential = self._credential_factory()
        return self._credential


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _mapped(exc: Any, what: str) -> Exception:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 0) or 0
    code = _error_code(response)
    detail = f"{what} answered {status}" + (f" ({code})" if code else "")
    if status == 404:
        return DeviceNotFound(detail)
    if status == 412:
        return TwinPreconditionFailed(detail)
    if status == 429:
        return HubThrottled(detail, retry_after=_retry_after(response))
    if status in (401, 403):
        return HubAccessDenied(detail)
    if status >= 500 or status == 0:
        return HubUnavailable(detail)
    return HubRequestRejected(detail, status)


def _error_code(response: Any) -> str | None:
    """IoT Hub bodies read {"Message": "ErrorCode:DeviceNotFound;..."}; keep just the code."""
    try:
        message = response.json().get("Message", "")
    except (AttributeError, ValueError):
        return None
    if isinstance(message, str) and message.startswith("ErrorCode:"):
        return message.removeprefix("ErrorCode:").split(";", 1)[0][:80]
    return None


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _strip(section: dict[str, Any] | None) -> tuple[dict[str, Any], int | None]:
    section = dict(section or {})
    version = section.get("$version")
    for key in _METADATA_KEYS:
        section.pop(key, None)
    return section, version if isinstance(version, int) else None


def _twin(hub: str, raw: Any) -> Twin:
    properties = raw.properties
    desired, desired_version = _strip(properties.desired if properties else None)
    reported, reported_version = _strip(properties.reported if properties else None)
    return Twin(
        hub=hub,
        device_id=raw.device_id,
        etag=raw.etag,
        version=raw.version,
        status=raw.status,
        tags=dict(raw.tags or {}),
        desired=desired,
        desired_version=desired_version,
        reported=reported,
        reported_version=reported_version,
    )


def _device(hub: str, raw: Any) -> DeviceRecord:
    authentication = getattr(raw, "authentication", None)
    return DeviceRecord(
        hub=hub,
        device_id=raw.device_id,
        etag=raw.etag,
        status=raw.status,
        authentication_type=getattr(authentication, "type", None),
        generation_id=raw.generation_id,
    )
