"""One hub's service operations: registry and twin use cases over the store.

Every method is synchronous and runs on the event loop, so a read-check-write sequence
(If-Match, then save) cannot interleave with another request.
"""

from __future__ import annotations

from collections.abc import Callable

from .devices import (
    Device,
    JsonObject,
    check_device_id,
    create_device,
    parse_device_body,
    update_device,
)
from .errors import IotHubError, device_exists, device_not_found, precondition_failed
from .notifications import TwinChangeNotification
from .query import TwinQuery
from .store import HubStore
from .timestamps import Clock, format_timestamp, utc_now
from .twin import (
    TwinChange,
    TwinState,
    new_twin,
    parse_reported_patch,
    parse_twin_body,
    replace_twin,
    twin_document,
    twin_etag,
    update_reported,
    update_twin,
)


def etag_matches(if_match: str | None, etag: str) -> bool:
    """If-Match absent or * matches anything; otherwise one of the listed tags must.

    azure-iot-hub quotes every If-Match it sends, the wildcard included ("*").
    """
    if if_match is None:
        return True
    for candidate in if_match.split(","):
        tag = candidate.strip().removeprefix("W/").strip('"')
        if tag in ("*", etag):
            return True
    return False


class Hub:
    """The registry and twins of one IoT hub."""

    def __init__(
        self,
        short_name: str,
        store: HubStore,
        *,
        clock: Clock = utc_now,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.short_name = short_name
        self.store = store
        self._clock = clock
        self._on_event = on_event or (lambda: None)

    def _load(self, device_id: str) -> tuple[Device, TwinState]:
        found = self.store.get(check_device_id(device_id))
        if found is None:
            raise device_not_found(device_id)
        return found

    def get_device(self, device_id: str) -> Device:
        return self._load(device_id)[0]

    def list_devices(self, limit: int) -> list[Device]:
        return self.store.list_devices(limit)

    def put_device(self, device_id: str, body: object, if_match: str | None) -> Device:
        """Create without If-Match (409 if it exists); update with If-Match (404, 412)."""
        settings = parse_device_body(body, check_device_id(device_id))
        now = self._clock()
        found = self.store.get(device_id)
        if if_match is None:
            if found is not None:
                raise device_exists(device_id)
            device = create_device(device_id, settings, now)
            self.store.save(device, new_twin(format_timestamp(now)))
            return device
        if found is None:
            raise device_not_found(device_id)
        existing, twin = found
        if not etag_matches(if_match, existing.etag):
            raise precondition_failed(f"device {device_id} has etag {existing.etag}")
        device = update_device(existing, settings, now)
        self.store.save(device, twin)
        return device

    def delete_device(self, device_id: str, if_match: str | None) -> None:
        device, _ = self._load(device_id)
        if not etag_matches(if_match, device.etag):
            raise precondition_failed(f"device {device_id} has etag {device.etag}")
        self.store.delete(device_id)

    def get_twin(self, device_id: str) -> JsonObject:
        return twin_document(*self._load(device_id))

    def query_twins(
        self, query: TwinQuery, page_size: int, after: str | None
    ) -> tuple[list[JsonObject], str | None]:
        """One page of matching twins in device id order, and the id it ends after if more match."""
        page: list[JsonObject] = []
        last = after
        for device, twin in self.store.devices_after(after):
            document = twin_document(device, twin)
            if query.matches(document):
                if len(page) == page_size:
                    return page, last
                page.append(document)
                last = device.device_id
        return page, None

    def update_twin(self, device_id: str, body: object, if_match: str | None) -> JsonObject:
        device, twin = self._load(device_id)
        patch = parse_twin_body(body, device_id)
        self._check_twin_etag(device, twin, if_match)
        timestamp = format_timestamp(self._clock())
        change = update_twin(twin, patch, timestamp)
        if change is None:
            return twin_document(device, twin)
        return self._commit(device, change, timestamp)

    def replace_twin(self, device_id: str, body: object, if_match: str | None) -> JsonObject:
        device, twin = self._load(device_id)
        patch = parse_twin_body(body, device_id)
        self._check_twin_etag(device, twin, if_match)
        timestamp = format_timestamp(self._clock())
        change = replace_twin(twin, patch, timestamp, device_id, device.generation_id)
        return self._commit(device, change, timestamp)

    def update_reported(self, device_id: str, body: object) -> JsonObject:
        """Stands in for a connected device reporting properties."""
        device, twin = self._load(device_id)
        patch = parse_reported_patch(body)
        if device.status == "disabled":
            raise IotHubError(
                403, "DeviceDisabled", f"device {device_id} is disabled and cannot connect"
            )
        timestamp = format_timestamp(self._clock())
        return self._commit(device, update_reported(twin, patch, timestamp), timestamp)

    def _check_twin_etag(self, device: Device, twin: TwinState, if_match: str | None) -> None:
        etag = twin_etag(device.generation_id, twin.version)
        if not etag_matches(if_match, etag):
            raise precondition_failed(f"twin {device.device_id} has etag {etag}")

    def _commit(self, device: Device, change: TwinChange, timestamp: str) -> JsonObject:
        notification = TwinChangeNotification(
            hub_name=self.short_name,
            device_id=device.device_id,
            op_type=change.op_type,
            body=change.body,
            operation_timestamp=timestamp,
        )
        enqueued = format_timestamp(self._clock())
        self.store.save(device, change.state, notification, enqueued)
        self._on_event()
        return twin_document(device, change.state)
