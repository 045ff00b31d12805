"""The IoT hubs DPS assigns devices to, driven through the real azure-iot-hub SDK.

The SDK is synchronous (msrest over requests): every call runs in a worker thread, with one
registry manager per thread and hub because a requests session is not meant to be shared.
Throttled calls (429, 503) wait for Retry-After on the event loop, not in the thread.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack.dps_emulator.errors import INTERNAL_ERROR, HubOperationFailed, HubsFileError
from iothub_client.registry_manager import registry_manager

T = TypeVar("T")
_REQUIRED_PARTS = ("HostName", "SharedAccessKeyName", "SharedAccessKey")
_THROTTLED = (429, 503)
_THROTTLE_BUDGET_SECONDS = 60.0
_DEFAULT_RETRY_AFTER = 1.0


class _Throttled(Exception):
    def __init__(self, seconds: float, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.seconds = seconds
        self.status = status


@dataclass(frozen=True)
class HubConnection:
    name: str
    connection_string: str
    url: str | None = None


@dataclass(frozen=True)
class TwinContent:
    """The parts of a twin DPS writes: tags and desired properties (no $metadata/$version)."""

    tags: dict[str, Any]
    desired: dict[str, Any]


def load_hubs_file(path: Path) -> dict[str, HubConnection]:
    """`{"<hub host name>": {"connectionString": "...", "url": "..."}}`, as the IoT Hub
    emulator's ready file lists its hubs."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise HubsFileError(f"hubs file {path}: cannot read: {exc}") from exc
    except ValueError as exc:
        raise HubsFileError(f"hubs file {path}: is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("hubs"), dict):
        data = data["hubs"]  # a whole ready file of the IoT Hub emulator works as well
    if not isinstance(data, dict) or not data:
        raise HubsFileError(f"hubs file {path}: must be an object of hub host name -> hub")
    hubs: dict[str, HubConnection] = {}
    for name, entry in data.items():
        where = f"hubs file {path}: {name}"
        if not isinstance(entry, dict):
            raise HubsFileError(f"{where}: must be an object with connectionString")
        connection_string = entry.get("connectionString")
        if not isinstance(connection_string, str):
            raise HubsFileError(f"{where}.connectionString: required string")
        parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        missing = [key for key in _REQUIRED_PARTS if not parts.get(key)]
        if missing:
            raise HubsFileError(f"{where}.connectionString: missing {', '.join(missing)}")
        url = entry.get("url")
        if url is not None and not isinstance(url, str):
            raise HubsFileError(f"{where}.url: must be a string")
        hubs[name.casefold()] = HubConnection(name, connection_string, url)
    return hubs


class HubDirectory:
    """Device identities and twins on the hubs of the hubs file."""

    def __init__(self, hubs: Mapping[str, HubConnection], ca_bundle: Path | None) -> None:
        self._hubs = dict(hubs)
        self._ca_bundle = ca_bundle
        self._local = threading.local()

    @property
    def names(self) -> list[str]:
        return [hub.name for hub in self._hubs.values()]

    def knows(self, hub: str) -> bool:
        return hub.casefold() in self._hubs

    async def ensure_device(self, hub: str, device_id: str, *, iot_edge: bool) -> bool:
        """Create the device (CA-signed X.509 auth) unless it exists; True if it was created."""

        def work(manager: Any) -> bool:
            if _absent_is_none(lambda: manager.get_device(device_id)) is not None:
                return False
            manager.create_device_with_certificate_authority(
                device_id, "enabled", iot_edge=iot_edge
            )
            return True

        return await self._call(hub, f"create device {device_id!r}", work)

    async def get_twin(self, hub: str, device_id: str) -> TwinContent | None:
        def work(manager: Any) -> TwinContent | None:
            twin = _absent_is_none(lambda: manager.get_twin(device_id))
            if twin is None:
                return None
            desired = dict((twin.properties.desired if twin.properties else None) or {})
            return TwinContent(
                tags=dict(twin.tags or {}),
                desired={key: value for key, value in desired.items() if not key.startswith("$")},
            )

        return await self._call(hub, f"read the twin of {device_id!r}", work)

    async def write_twin(
        self, hub: str, device_id: str, content: TwinContent, *, replace: bool
    ) -> None:
        """Write tags and desired properties (If-Match *): PUT when `replace`, else PATCH."""
        from azure.iot.hub.models import Twin, TwinProperties

        twin = Twin(tags=content.tags, properties=TwinProperties(desired=content.desired))

        def work(manager: Any) -> None:
            if replace:
                manager.replace_twin(device_id, twin)
            else:
                manager.update_twin(device_id, twin)

        await self._call(hub, f"write the twin of {device_id!r}", work)

    async def delete_device(self, hub: str, device_id: str) -> None:
        def work(manager: Any) -> None:
            _absent_is_none(lambda: manager.delete_device(device_id))

        await self._call(hub, f"delete device {device_id!r}", work)

    async def _call(self, hub: str, what: str, work: Callable[[Any], T]) -> T:
        connection = self._hubs.get(hub.casefold())
        if connection is None:
            raise HubOperationFailed(INTERNAL_ERROR, f"IoT hub {hub} is not in the hubs file")

        def run() -> T:
            from msrest.exceptions import ClientRequestError, HttpOperationError

            try:
                return work(self._manager(connection))
            except HttpOperationError as exc:
                status = getattr(exc.response, "status_code", "?")
                if status in _THROTTLED:
                    raise _Throttled(_retry_after(exc.response), status) from exc
                raise HubOperationFailed(
                    INTERNAL_ERROR, f"IoT hub {hub}: {what} failed with HTTP {status}: {exc}"
                ) from exc
            except ClientRequestError as exc:
                raise HubOperationFailed(
                    INTERNAL_ERROR, f"IoT hub {hub}: {what} failed: {exc}"
                ) from exc

        deadline = asyncio.get_running_loop().time() + _THROTTLE_BUDGET_SECONDS
        while True:
            try:
                return await asyncio.to_thread(run)
            except _Throttled as throttled:
                pause = throttled.seconds * random.uniform(1.0, 1.5)
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise HubOperationFailed(
                        INTERNAL_ERROR,
                        f"IoT hub {hub}: {what} still throttled ({throttled}) after "
                        f"{_THROTTLE_BUDGET_SECONDS:.0f} s",
                    ) from throttled
                await asyncio.sleep(pause)

    def _manager(self, connection: HubConnection) -> Any:
        managers: dict[str, Any] = self._local.__dict__.setdefault("managers", {})
        manager = managers.get(connection.name)
        if manager is None:
            # As the app configures it: no hidden SDK retries, the session kept alive.
            manager = registry_manager(
                connection.connection_string,
                ca_bundle=None if self._ca_bundle is None else str(self._ca_bundle),
            )
            managers[connection.name] = manager
        return manager


def _retry_after(response: Any) -> float:
    headers = getattr(response, "headers", None) or {}
    try:
        return max(0.05, float(headers.get("Retry-After", _DEFAULT_RETRY_AFTER)))
    except (TypeError, ValueError):
        return _DEFAULT_RETRY_AFTER


def _absent_is_none(call: Callable[[], T]) -> T | None:
    """Run an SDK call; None when the hub answers 404."""
    from msrest.exceptions import HttpOperationError

    try:
        return call()
    except HttpOperationError as exc:
        if getattr(exc.response, "status_code", None) == 404:
            return None
        raise
