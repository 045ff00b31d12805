"""The asset operations: each one a single atomic transaction that decides, writes and records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from . import problems, trace_context
from .change_events import DEFAULT_TOPIC, EventSchema, change_events
from .merge_patch import apply_merge_patch
from .model import (
    Asset,
    AssetDraft,
    AssetStatus,
    EventType,
    HistoryEvent,
    ProvisioningStatus,
    as_utc,
    format_timestamp,
)
from .preconditions import EntityTags, Preconditions
from .problems import Problem
from .replacement_rules import ApprovalPolicy, approved_takeover
from .store import AssetStore, Transaction
from .validation import LinkRequest, ListQuery, parse_asset_body

Clock = Callable[[], datetime]


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Asset]
    next: str | None


def _stale(asset_id: str, sent: str, current: Asset | None) -> Problem:
    if current is None:
        detail = f"If-Match {sent} cannot match: asset {asset_id} does not exist"
    else:
        detail = (
            f"If-Match {sent} does not match asset {asset_id}: its current version is "
            f"{current.version} (ETag {current.etag})"
        )
    return Problem(
        412,
        detail,
        type_=problems.VERSION_MISMATCH,
        title="Version mismatch",
        extensions={"currentVersion": None if current is None else current.version},
    )


def _approval_conflict(detail: str) -> Problem:
    return Problem(
        409,
        detail,
        type_=problems.REPLACEMENT_CONFLICT,
        title="Replacement does not fit the asset",
        extensions={"field": "replacement"},
    )


class AssetService:
    """Rules of the asset API over an AssetStore; raises Problem for every refusal.

    Every write that bumps a version queues its change events in the same transaction.
    """

    def __init__(
        self,
        store: AssetStore,
        clock: Clock,
        *,
        topic: str = DEFAULT_TOPIC,
        approvals: ApprovalPolicy | None = None,
        event_schema: EventSchema = EventSchema.EVENT_GRID,
    ) -> None:
        self._store = store
        self._clock = clock
        self._topic = topic
        self._event_schema = event_schema
        self._approvals = approvals or ApprovalPolicy()

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def get(self, asset_id: str) -> Asset:
        with self._store.transaction(write=False) as tx:
            asset = tx.get(asset_id)
        if asset is None:
            raise problems.not_found(asset_id)
        return asset

    def find(self, query: ListQuery) -> Page:
        with self._store.transaction(write=False) as tx:
            rows = tx.find(query)
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            return Page(items=rows, next=rows[-1].asset_id)
        return Page(items=rows, next=None)

    def history(self, asset_id: str) -> list[HistoryEvent]:
        with self._store.transaction(write=False) as tx:
            if tx.get(asset_id) is None:
                raise problems.not_found(asset_id)
            return tx.history(asset_id)

    def put(
        self, asset_id: str, draft: AssetDraft, conditions: Preconditions
    ) -> tuple[Asset, bool]:
        """Create (True) or replace (False) the asset; a replace with equal content is a no-op."""
        with self._store.transaction(write=True) as tx:
            current = tx.get(asset_id)
            if conditions.if_match is not None and (
                current is None or not conditions.if_match.strong_match(current.version)
            ):
                raise _stale(asset_id, conditions.if_match.describe(), current)
            if (
                conditions.if_none_match is not None
                and current is not None
                and conditions.if_none_match.weak_match(current.version)
            ):
                raise Problem(
                    412,
                    f"asset {asset_id} already exists (version {current.version}) and "
                    f"If-None-Match is {conditions.if_none_match.describe()}",
                    type_=problems.ASSET_EXISTS,
                    title="Asset exists",
                    extensions={"currentVersion": current.version},
                )
            return self._write(tx, asset_id, draft, current), current is None

    def patch(self, asset_id: str, patch: dict[str, Any], if_match: EntityTags) -> Asset:
        """Apply a merge patch the caller already checked (validation.check_patch)."""
        with self._store.transaction(write=True) as tx:
            current = tx.get(asset_id)
            if current is None:
                raise problems.not_found(asset_id)
            if not if_match.strong_match(current.version):
                raise _stale(asset_id, if_match.describe(), current)
            merged = apply_merge_patch(current.to_json(), patch)
            if "status" in patch and "replacement" not in patch:
                merged["replacement"] = None  # leaving pendingReplacement withdraws the approval
            terms = merged.get("replacement")
            if isinstance(terms, dict) and not {"oldDeviceId", "reason"} <= terms.keys():
                raise _approval_conflict(
                    f"asset {asset_id} has no approval to amend: send the replacement's "
                    "oldDeviceId and reason"
                )
            draft = parse_asset_body(merged, asset_id)
            return self._write(tx, asset_id, draft, current)

    def _publish(self, tx: Transaction, before: Asset | None, after: Asset) -> None:
        events = change_events(
            before,
            after,
            at=after.updated_at,
            topic=self._topic,
            schema=self._event_schema,
            trace=trace_context.current(),
        )
        tx.outbox.append(events)

    def _write(
        self,
        tx: Transaction,
        asset_id: str,
        draft: AssetDraft,
        current: Asset | None,
        *,
        publish: bool = True,
    ) -> Asset:
        if current is not None and current.draft.same_content(draft):
            return current
        if draft.replacement is not None and draft.replacement.old_device_id != draft.device_id:
            linked = "no device" if draft.device_id is None else f"device {draft.device_id}"
            raise _approval_conflict(
                f"the replacement's oldDeviceId {draft.replacement.old_device_id} is not the "
                f"device linked to asset {asset_id} (it has {linked})"
            )
        owner = tx.asset_with_serial(draft.serial_number)
        if owner is not None and owner != asset_id:
            raise Problem(
                409,
                f"serialNumber {draft.serial_number} already belongs to asset {owner}",
                type_=problems.SERIAL_CONFLICT,
                title="Serial number in use",
                extensions={"field": "serialNumber", "assetId": owner},
            )
        if draft.device_id is not None:
            self._ensure_device_free(tx, asset_id, draft.device_id)
        now = self._now()
        approved_at = current.replacement_approved_at if current is not None else None
        newly_approved = draft.replacement is not None and (
            current is None or current.draft.replacement != draft.replacement
        )
        if newly_approved:
            approved_at = now
        elif draft.replacement is None:
            approved_at = None
        asset = Asset(
            asset_id=asset_id,
            draft=draft,
            version=1 if current is None else current.version + 1,
            updated_at=now,
            replacement_approved_at=approved_at,
        )
        tx.save(asset)
        if current is None:
            tx.append_event(
                asset,
                EventType.CREATED,
                now,
                {"serialNumber": draft.serial_number, "deviceId": draft.device_id},
            )
        if newly_approved and draft.replacement is not None:
            tx.append_event(asset, EventType.REPLACEMENT_APPROVED, now, draft.replacement.to_json())
        if publish:
            self._publish(tx, current, asset)
        return asset

    def _ensure_device_free(self, tx: Transaction, asset_id: str, device_id: str) -> None:
        owner = tx.asset_with_device(device_id)
        if owner is not None and owner != asset_id:
            raise Problem(
                409,
                f"device {device_id} is already linked to asset {owner}",
                type_=problems.DEVICE_CONFLICT,
                title="Device linked elsewhere",
                extensions={"deviceId": device_id, "assetId": owner},
            )

    def link_device(self, asset_id: str, request: LinkRequest) -> tuple[Asset, bool]:
        """Link (True) or find already linked (False); replaces only an approved old device.

        The approval is checked and cleared in the link's write transaction: of two claims
        racing for one approval, the second finds it gone.
        """
        with self._store.transaction(write=True) as tx:
            current = tx.get(asset_id)
            if current is None:
                raise problems.not_found(asset_id)
            if current.draft.device_id == request.device_id:
                return current, False
            if current.draft.status is AssetStatus.RETIRED:
                raise Problem(
                    409,
                    f"asset {asset_id} is retired; no device can be linked to it",
                    type_=problems.ASSET_RETIRED,
                    title="Asset retired",
                )
            self._ensure_device_free(tx, asset_id, request.device_id)
            moment = as_utc(self._clock())
            now = format_timestamp(moment)
            linked = current.draft.device_id
            if linked is None:
                status = current.draft.status
                asset = self._relinked(current, request.device_id, now)
                if status is AssetStatus.PLANNED:
                    asset = dataclasses.replace(
                        asset, draft=dataclasses.replace(asset.draft, status=AssetStatus.ACTIVE)
                    )
                tx.save(asset)
                self._publish(tx, current, asset)
                tx.append_event(
                    asset,
                    EventType.DEVICE_LINKED,
                    now,
                    {
                        "deviceId": request.device_id,
                        "registrationId": request.registration_id,
                        "thumbprint": request.thumbprint,
                    },
                )
                return asset, True
            terms = approved_takeover(current, request, linked, moment, self._approvals)
            asset = self._relinked(current, request.device_id, now)
            asset = dataclasses.replace(
                asset,
                draft=dataclasses.replace(asset.draft, status=AssetStatus.ACTIVE, replacement=None),
                replacement_approved_at=None,
            )
            tx.save(asset)
            self._publish(tx, current, asset)
            tx.append_event(
                asset,
                EventType.DEVICE_REPLACED,
                now,
                {
                    "oldDeviceId": linked,
                    "newDeviceId": request.device_id,
                    "registrationId": request.registration_id,
                    "thumbprint": request.thumbprint,
                    "sha1Thumbprint": request.sha1_thumbprint,
                    "serialNumber": request.serial_number,
                    "reason": terms.reason,
                    "deviceReason": request.device_reason,
                },
            )
            return asset, True

    @staticmethod
    def _relinked(current: Asset, device_id: str, now: str) -> Asset:
        return dataclasses.replace(
            current,
            draft=dataclasses.replace(
                current.draft,
                device_id=device_id,
                provisioning_status=ProvisioningStatus.PROVISIONED,
            ),
            version=current.version + 1,
            updated_at=now,
        )

    def seed(self, fleet: Sequence[tuple[str, AssetDraft]]) -> int:
        """Create the demo fleet when the database holds no asset; returns how many were made.

        The fleet is the starting state, not a change: it publishes no events.
        """
        with self._store.transaction(write=True) as tx:
            if tx.count() > 0:
                return 0
            for asset_id, draft in fleet:
                self._write(tx, asset_id, draft, None, publish=False)
        return len(fleet)
