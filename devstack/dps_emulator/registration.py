"""One device registration as DPS runs it: webhook, hub assignment, reprovisioning, state.

Reprovisioning (Microsoft's documented rules): the webhook is called on every registration;
its initialTwin is applied on first assignment, and on a hub change only under "reprovision
and reset" (updateHubAssignment true, migrateDeviceData false). "Reprovision and migrate"
copies the twin from the old hub; either way the device is removed from the old hub. Under
"never reprovision" the webhook may only pick the device's current hub.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from devstack.dps_emulator.certificate_info import X509Shape, certificate_info, runtime_x509
from devstack.dps_emulator.enrollment_groups import EnrollmentGroup
from devstack.dps_emulator.errors import (
    CUSTOM_ALLOCATION_FAILED,
    INTERNAL_ERROR,
    HubOperationFailed,
    RegistrationFailed,
)
from devstack.dps_emulator.hubs import HubDirectory, TwinContent
from devstack.dps_emulator.store import RegistrationStore, StoredRegistration
from devstack.dps_emulator.webhook import WebhookAnswer, WebhookCaller

logger = logging.getLogger("devstack.dps_emulator.registration")

INITIAL_ASSIGNMENT = "initialAssignment"
DEVICE_DATA_MIGRATED = "deviceDataMigrated"
DEVICE_DATA_RESET = "deviceDataReset"
REPROVISIONED_TO_INITIAL_ASSIGNMENT = "reprovisionedToInitialAssignment"
_FINISHED_OPERATIONS_KEPT = 50_000


@dataclass(frozen=True)
class DeviceRequest:
    """An authenticated registration request: the leaf certificate verified against `signer`."""

    registration_id: str
    group: EnrollmentGroup
    certificate: x509.Certificate
    signer: x509.Certificate
    payload: dict[str, Any] | None


@dataclass
class Operation:
    operation_id: str
    registration_id: str
    status: str = "assigning"
    registration_state: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        """The operation status document the device polls."""
        if self.status == "assigning":
            return {
                "operationId": self.operation_id,
                "status": "assigning",
                "registrationState": {
                    "registrationId": self.registration_id,
                    "status": "assigning",
                },
            }
        return {
            "operationId": self.operation_id,
            "status": self.status,
            "registrationState": self.registration_state,
        }


class RegistrationService:
    def __init__(
        self,
        *,
        store: RegistrationStore,
        webhook: WebhookCaller,
        hubs: HubDirectory | None,
        x509_shape: X509Shape,
    ) -> None:
        self._store = store
        self._webhook = webhook
        self._hubs = hubs
        self._x509_shape = x509_shape
        self._operations: OrderedDict[str, Operation] = OrderedDict()
        self._in_flight: dict[str, Operation] = {}

    def start(self, request: DeviceRequest) -> Operation:
        """Begin (or join, if one is running for this device) a registration operation."""
        key = request.registration_id.casefold()
        running = self._in_flight.get(key)
        if running is not None:
            return running
        operation = Operation(str(uuid.uuid4()), request.registration_id)
        self._operations[operation.operation_id] = operation
        self._in_flight[key] = operation
        operation.task = asyncio.create_task(self._run(operation, request))
        self._forget_old_operations()
        return operation

    def operation(self, operation_id: str) -> Operation | None:
        return self._operations.get(operation_id)

    def registration_state(self, registration_id: str) -> dict[str, Any] | None:
        stored = self._store.get(registration_id)
        return stored.state if stored else None

    async def close(self) -> None:
        tasks = [op.task for op in self._in_flight.values() if op.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, operation: Operation, request: DeviceRequest) -> None:
        try:
            operation.registration_state = await self._register(request)
            operation.status = operation.registration_state["status"]
        except Exception as exc:
            logger.exception("registration of %s crashed", request.registration_id)
            operation.registration_state = {
                "registrationId": request.registration_id,
                "status": "failed",
                "errorCode": INTERNAL_ERROR,
                "errorMessage": f"internal error: {exc}",
            }
            operation.status = "failed"
        finally:
            self._in_flight.pop(request.registration_id.casefold(), None)

    async def _register(self, request: DeviceRequest) -> dict[str, Any]:
        group = request.group
        previous = self._store.get(request.registration_id)
        registration_id = previous.registration_id if previous else request.registration_id
        device_id = (previous.device_id if previous else None) or registration_id
        current_hub = previous.assigned_hub if previous else None
        initial_hub = previous.initial_hub if previous else None
        now = _now()
        created = previous.created_at if previous else now
        base_state: dict[str, Any] = {
            "x509": {
                "enrollmentGroupId": group.group_id,
                "certificateInfo": certificate_info(request.certificate),
                "signingCertificateInfo": certificate_info(request.signer),
            },
            "registrationId": registration_id,
            "createdDateTimeUtc": created,
        }
        try:
            linked = self._linked_hubs(group, current_hub)
            body = self._webhook_request(request, registration_id, device_id, current_hub, linked)
            answer = await self._webhook.allocate(group.webhook_url, body)
            hub = _linked(answer.iot_hub_host_name, linked)
            substatus = await self._assign(group, device_id, hub, current_hub, initial_hub, answer)
        except RegistrationFailed as failure:
            state = {
                **base_state,
                "status": "failed",
                "errorCode": failure.error_code,
                "errorMessage": failure.message,
                "lastUpdatedDateTimeUtc": _now(),
                "etag": _etag(),
            }
            logger.info("%s failed: %s", registration_id, failure)
            self._save(previous, request, registration_id, device_id, current_hub, created, state)
            return state
        state = {
            **base_state,
            "assignedHub": hub,
            "deviceId": device_id,
            "status": "assigned",
            "substatus": substatus,
            "lastUpdatedDateTimeUtc": _now(),
            "etag": _etag(),
        }
        if answer.payload is not None:
            state["payload"] = answer.payload
        logger.info("%s assigned to %s (%s)", registration_id, hub, substatus)
        self._save(previous, request, registration_id, device_id, hub, created, state)
        return state

    def _linked_hubs(self, group: EnrollmentGroup, current_hub: str | None) -> list[str]:
        if current_hub is not None and not group.update_hub_assignment:
            return [current_hub]
        # DPS: a group without iotHubs may use every hub linked to the DPS instance.
        hubs = list(group.iot_hubs) or (self._hubs.names if self._hubs else [])
        if not hubs:
            raise RegistrationFailed(
                CUSTOM_ALLOCATION_FAILED,
                f"enrollment group {group.group_id} links no IoT hub (iotHubs is empty)",
            )
        return hubs

    def _webhook_request(
        self,
        request: DeviceRequest,
        registration_id: str,
        device_id: str,
        current_hub: str | None,
        linked: list[str],
    ) -> dict[str, Any]:
        context: dict[str, Any] = {"registrationId": registration_id}
        if current_hub is not None:
            context["currentIotHubHostName"] = current_hub
            context["currentDeviceId"] = device_id
        context["x509"] = runtime_x509(request.certificate, self._x509_shape)
        if request.payload is not None:
            context["payload"] = request.payload
        return {
            "enrollmentGroup": request.group.webhook_record(),
            "deviceRuntimeContext": context,
            "linkedHubs": linked,
        }

    async def _assign(
        self,
        group: EnrollmentGroup,
        device_id: str,
        hub: str,
        current_hub: str | None,
        initial_hub: str | None,
        answer: WebhookAnswer,
    ) -> str:
        """Put the device on `hub` per the reprovision policy; return the substatus."""
        initial_twin = _twin_content(answer.initial_twin)
        if current_hub is None or current_hub.casefold() == hub.casefold():
            if self._hubs is not None:
                created = await self._hubs.ensure_device(hub, device_id, iot_edge=_iot_edge(group))
                # Same hub: the twin stays as it is, unless the identity had been deleted.
                if created and initial_twin is not None:
                    await self._hubs.write_twin(hub, device_id, initial_twin, replace=False)
            return INITIAL_ASSIGNMENT
        substatus = DEVICE_DATA_MIGRATED if group.migrate_device_data else DEVICE_DATA_RESET
        if self._hubs is not None:
            content = initial_twin
            if group.migrate_device_data:
                old = (
                    await self._hubs.get_twin(current_hub, device_id)
                    if self._hubs.knows(current_hub)
                    else None
                )
                if old is not None:
                    content = old
                else:
                    logger.warning(
                        "%s: nothing to migrate from %s; initialTwin applied",
                        device_id,
                        current_hub,
                    )
                    substatus = DEVICE_DATA_RESET
            created = await self._hubs.ensure_device(hub, device_id, iot_edge=_iot_edge(group))
            if content is not None:
                await self._hubs.write_twin(hub, device_id, content, replace=not created)
            await self._remove_from_old_hub(current_hub, device_id)
        if initial_hub is not None and initial_hub.casefold() == hub.casefold():
            return REPROVISIONED_TO_INITIAL_ASSIGNMENT
        return substatus

    async def _remove_from_old_hub(self, hub: str, device_id: str) -> None:
        assert self._hubs is not None
        if not self._hubs.knows(hub):
            logger.warning("%s: old hub %s is not in the hubs file; not removed", device_id, hub)
            return
        try:
            await self._hubs.delete_device(hub, device_id)
        except HubOperationFailed as exc:
            logger.warning("%s: could not remove it from %s: %s", device_id, hub, exc)

    def _save(
        self,
        previous: StoredRegistration | None,
        request: DeviceRequest,
        registration_id: str,
        device_id: str,
        hub: str | None,
        created: str,
        state: dict[str, Any],
    ) -> None:
        initial_hub = previous.initial_hub if previous and previous.initial_hub else hub
        self._store.save(
            StoredRegistration(
                registration_id=registration_id,
                group_id=request.group.group_id,
                device_id=device_id if hub else (previous.device_id if previous else None),
                assigned_hub=hub,
                initial_hub=initial_hub,
                created_at=created,
                state=state,
            )
        )

    def _forget_old_operations(self) -> None:
        while len(self._operations) > _FINISHED_OPERATIONS_KEPT:
            operation_id, operation = next(iter(self._operations.items()))
            if operation.status == "assigning":
                break
            del self._operations[operation_id]


def _linked(hub: str, linked: list[str]) -> str:
    for candidate in linked:
        if candidate.casefold() == hub.casefold():
            return candidate
    raise RegistrationFailed(
        CUSTOM_ALLOCATION_FAILED,
        f"CustomAllocationFailed: the webhook chose {hub}, which is not one of the linked hubs "
        f"{linked}",
    )


def _twin_content(initial_twin: dict[str, Any] | None) -> TwinContent | None:
    if not initial_twin:
        return None
    tags = initial_twin.get("tags")
    properties = initial_twin.get("properties")
    desired = properties.get("desired") if isinstance(properties, dict) else None
    if tags is not None and not isinstance(tags, dict):
        raise RegistrationFailed(CUSTOM_ALLOCATION_FAILED, "initialTwin.tags must be an object")
    if desired is not None and not isinstance(desired, dict):
        raise RegistrationFailed(
            CUSTOM_ALLOCATION_FAILED, "initialTwin.properties.desired must be an object"
        )
    if not tags and not desired:
        return None
    return TwinContent(tags=dict(tags or {}), desired=dict(desired or {}))


def _iot_edge(group: EnrollmentGroup) -> bool:
    capabilities = group.record.get("capabilities") or {}
    return bool(capabilities.get("iotEdge", False))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _etag() -> str:
    """Opaque, quoted and base64'd like DPS's registration etags."""
    return base64.b64encode(f'"{os.urandom(16).hex()}"'.encode()).decode()
