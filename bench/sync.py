"""Sync throughput and write amplification, both directions, on the whole local stack.

Fleet: DEVICES assets, half in us-east/... and half in eu-west/..., so their devices land on
both hubs; every device is onboarded through DPS (register_device, a certificate from the
enrollment group's CA, ONBOARD_CONCURRENCY at a time), then the stack settles.

Twin -> asset: 1,000 twin-change events in batches of 100, RUNS times. The IoT Hub emulator
does batch its notifications (up to 100, flushed 50 ms after the first waits), but device-side
reported updates spend the same 50/s/hub throttle, so they reach the host a few per batch and
no setting makes that 100. The events are therefore built with the emulator's own code (its
twin.update_reported on each device's real twin, then TwinChangeNotification.to_event) and
POSTed in 10 batches of 100 to the function host's Event Hub endpoint, one after the other,
as one Event Hub partition delivers them. 500 devices x 2 rounds: each batch holds 100
distinct devices and every event carries a new firmwareVersion, so each event is one
effective change. Timed from the first POST until the asset service shows all 1,000 values;
the asset events those writes raise reach the host meanwhile and share its CPU, as they would.

Asset -> twin: every asset's location is patched through the asset service's HTTP API (its
change events reach the host through its Event Grid delivery), RUNS times, timed from the
first PATCH until both hubs' notification logs show every twin with the new location. The
emulator throttles twin updates at 50/s per hub; the app limits itself to APP_TWIN_RATE.
The devstack publisher has one request (<= 10 events, invoked one by one) in flight, where
Event Grid delivers concurrently; so RUNS more runs also send the same events from the asset
service's outbox PARALLEL_DELIVERIES requests at a time (each event then arrives twice).

Writes are counted from versions, after each run settles (no asset event pending, nothing
moving for QUIET_SECONDS): asset writes = sum of asset `version` increments; sync's twin
writes = sum of `properties.desired.$version` increments (the emulator bumps it on every tags
or desired write, never on a device's reported update); device writes = sum of
`properties.reported.$version` increments. Amplification = all writes the sync caused (the
target side plus any echo on the source side) / effective changes, and must be 1.0.

No-ops, which must cause no write: a batch delivered twice; real device reports (through the
emulator's PATCH /devstack/twins/{id}/reported) of values the asset already holds, followed
by one effective sentinel report per hub to know they were processed; identical asset
PATCHes; and the last run's asset events delivered again.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.harness import client_connector
from bench.reporting import write_result
from bench.stack_rig import RunningStack, running_stack
from devstack.dps_device_client import register_device
from devstack.iothub_emulator.endpoints import short_name
from devstack.iothub_emulator.notifications import TwinChangeNotification
from devstack.iothub_emulator.timestamps import format_timestamp, utc_now
from devstack.iothub_emulator.twin import TwinState, update_reported

RUNS = 3
DEVICES = 500
EVENTS = 1000
BATCH = 100
ONBOARD_CONCURRENCY = 100
HTTP_CONCURRENCY = 50
QUIET_SECONDS = 2.0
NOOP_DEVICES = 100
PARALLEL_DELIVERIES = 16
"""Event Grid delivers to a webhook concurrently; the devstack publisher does not."""
APP_TWIN_RATE = 40.0
"""IOT_HUB_TWIN_UPDATES_PER_SECOND, the app's own per-hub limit (the shipped default)."""
HUB_TWIN_RATE = 50.0
"""The emulator's per-hub twin update throttle (IoT Hub S1), answered with 429 beyond it."""
REGIONS = {"us-east": "hub-us-east.azure-devices.net", "eu-west": "hub-eu-west.azure-devices.net"}
API_VERSION = "2021-04-12"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Device:
    device_id: str
    asset_id: str
    serial: str
    region: str
    index: int

    @property
    def hub(self) -> str:
        return REGIONS[self.region]


@dataclass(frozen=True)
class TwinVersions:
    version: int
    desired: int
    reported: int


@dataclass(frozen=True)
class Writes:
    assets: int
    sync_twin: int
    device_twin: int

    def as_json(self) -> dict[str, int]:
        return {"assets": self.assets, "syncTwin": self.sync_twin, "deviceTwin": self.device_twin}


@dataclass(frozen=True)
class Snapshot:
    assets: dict[str, dict[str, Any]]
    twins: dict[str, dict[str, Any]]

    def versions(self) -> dict[str, TwinVersions]:
        return {device_id: _versions(twin) for device_id, twin in self.twins.items()}


def _versions(twin: dict[str, Any]) -> TwinVersions:
    properties = twin["properties"]
    return TwinVersions(
        twin["version"], properties["desired"]["$version"], properties["reported"]["$version"]
    )


def writes_between(before: Snapshot, after: Snapshot, devices: Iterable[Device]) -> Writes:
    assets = sync_twin = device_twin = 0
    old, new = before.versions(), after.versions()
    for device in devices:
        assets += (
            after.assets[device.asset_id]["version"] - before.assets[device.asset_id]["version"]
        )
        first, last = old[device.device_id], new[device.device_id]
        sync_twin += last.desired - first.desired
        device_twin += last.reported - first.reported
        # Every twin write bumps the twin version once: the two kinds account for all of them.
        assert last.version - first.version == (last.desired - first.desired) + (
            last.reported - first.reported
        ), device.device_id
    return Writes(assets, sync_twin, device_twin)


class SyncRig:
    """HTTP to the running stack's asset service, hubs and function host (aiohttp throughout)."""

    def __init__(self, stack: RunningStack, session: aiohttp.ClientSession, tag: str) -> None:
        self.stack = stack
        self.d = stack.d
        self.session = session
        self.tag = tag
        self._asset_headers = {"x-api-key": self.d["assetApiKey"]}
        self._tls = ssl.create_default_context(cafile=self.d["tls"]["caCert"])
        self._hub_tokens = {
            name: _sas_token(hub["connectionString"]) for name, hub in self.d["hubs"].items()
        }
        self._cursor = dict.fromkeys(self.d["hubs"], 0)
        self._gate = asyncio.Semaphore(HTTP_CONCURRENCY)

    def location(self, region: str, leaf: str) -> str:
        return f"{region}/sync-bench-{self.tag}/{leaf}"

    # --- asset service --------------------------------------------------------------------------

    async def _asset_json(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.d['assetApi']}{path}"
        headers = {**self._asset_headers, **kwargs.pop("headers", {})}
        async with (
            self._gate,
            self.session.request(method, url, headers=headers, **kwargs) as answer,
        ):
            body = await answer.json(content_type=None)
            if answer.status >= 300:
                raise RuntimeError(f"{method} {path}: {answer.status} {body}")
            return body

    async def put_asset(self, device: Device, location: str) -> None:
        document = {
            "serialNumber": device.serial,
            "assetType": "temperature-sensor",
            "location": location,
        }
        await self._asset_json("PUT", f"/assets/{device.asset_id}", json=document)

    async def assets(self) -> dict[str, dict[str, Any]]:
        """Every bench asset, listed by location prefix (a page of up to 1,000 at a time)."""
        found: dict[str, dict[str, Any]] = {}
        for region in REGIONS:
            params = {"location": self.location(region, ""), "limit": "1000"}
            while True:
                page = await self._asset_json("GET", "/assets", params=params)
                found.update((item["assetId"], item) for item in page["items"])
                if not page.get("next"):
                    break
                params["after"] = page["next"]
        return found

    async def patch_asset(self, asset_id: str, patch: dict[str, Any], version: int) -> int:
        """Merge-patch with If-Match; on 412 read the asset again. Returns the new version."""
        for _ in range(10):
            url = f"{self.d['assetApi']}/assets/{asset_id}"
            headers = {
                **self._asset_headers,
                "if-match": f'"{version}"',
                "content-type": MERGE_PATCH,
            }
            async with self._gate, self.session.patch(url, json=patch, headers=headers) as answer:
                body = await answer.json(content_type=None)
            if answer.status == 200:
                return int(body["version"])
            if answer.status != 412:
                raise RuntimeError(f"PATCH {asset_id}: {answer.status} {body}")
            version = (await self._asset_json("GET", f"/assets/{asset_id}"))["version"]
        raise RuntimeError(f"asset {asset_id} kept changing")

    async def asset_events(self, status: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
        params = {"limit": str(limit)} | ({"status": status} if status else {})
        items: list[dict[str, Any]] = (
            await self._asset_json("GET", "/devstack/events", params=params)
        )["items"]
        return items

    async def change_events_of(self, versions: dict[str, int]) -> list[dict[str, Any]]:
        """The AssetChanged outbox entries that produced exactly these asset versions."""
        recent = await self.asset_events(limit=2 * len(versions) + 100)
        found = [
            item
            for item in recent
            # The devstack publishes CloudEvents (`type`); the Event Grid schema says `eventType`.
            if item["event"].get("type", item["event"].get("eventType"))
            == "AssetManagement.AssetChanged"
            and versions.get(item["event"]["data"]["assetId"]) == item["event"]["data"]["version"]
        ]
        assert len(found) == len(versions), f"{len(found)} of {len(versions)} change events"
        return found

    async def redeliver(self, event_ids: list[str]) -> None:
        await self._asset_json("POST", "/devstack/events/redeliver", json={"ids": event_ids})

    # --- hubs -----------------------------------------------------------------------------------

    async def _hub_json(self, hub: str, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.d['hubs'][hub]['url']}{path}"
        headers = {"Authorization": self._hub_tokens[hub]}
        for _ in range(50):
            async with (
                self._gate,
                self.session.request(
                    method, url, headers=headers, ssl=self._tls, **kwargs
                ) as answer,
            ):
                body = await answer.json(content_type=None)
                retry_after = float(answer.headers.get("Retry-After", "0.1"))
            if answer.status == 429:  # a device's own report spends the hub's quota too
                await asyncio.sleep(retry_after)
                continue
            if answer.status >= 300:
                raise RuntimeError(f"{method} {path} on {hub}: {answer.status} {body}")
            return body
        raise RuntimeError(f"{method} {path} on {hub}: throttled 50 times")

    async def twins(self, devices: Iterable[Device]) -> dict[str, dict[str, Any]]:
        async def one(device: Device) -> tuple[str, dict[str, Any]]:
            path = f"/twins/{quote(device.device_id, safe='')}?api-version={API_VERSION}"
            return device.device_id, await self._hub_json(device.hub, "GET", path)

        return dict(await asyncio.gather(*(one(device) for device in devices)))

    async def report(self, device: Device, reported: dict[str, Any]) -> None:
        """What a connected device does: a reported-properties update (a real notification)."""
        path = f"/devstack/twins/{quote(device.device_id, safe='')}/reported"
        await self._hub_json(device.hub, "PATCH", path, json=reported)

    async def new_hub_events(self, hub: str) -> list[dict[str, Any]]:
        """The notifications the hub emitted since the last call (GET /devstack/events)."""
        events: list[dict[str, Any]] = []
        while True:
            page = await self._hub_json(hub, "GET", f"/devstack/events?after={self._cursor[hub]}")
            if not page["events"]:
                return events
            events += page["events"]
            self._cursor[hub] = page["events"][-1]["sequenceNumber"]

    # --- function host --------------------------------------------------------------------------

    async def deliver(self, events: list[dict[str, Any]]) -> None:
        """One batch to the twin_changed function; the host answers when the invocation ended."""
        url = f"{self.d['functionHost']}/admin/devstack/eventhubs/{self.d['twinEventsHub']}"
        async with self.session.post(url, json={"events": events}) as answer:
            result = await answer.json(content_type=None)
        if answer.status != 200 or result["failed"] or not result["invocations"]:
            raise RuntimeError(f"event hub delivery: {answer.status} {result}")

    async def deliver_asset_events(self, events: list[dict[str, Any]], parallel: int) -> None:
        """To the asset_changed function's Event Grid webhook, one event per request."""
        gate = asyncio.Semaphore(parallel)
        headers = {"aeg-event-type": "Notification"}

        async def one(event: dict[str, Any]) -> None:
            url = self.d["assetEventsSubscriber"]
            async with gate, self.session.post(url, json=[event], headers=headers) as answer:
                await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"event grid delivery: {answer.status}")

        await asyncio.gather(*(one(event) for event in events))

    # --- together -------------------------------------------------------------------------------

    async def snapshot(self, devices: list[Device]) -> Snapshot:
        assets, twins = await asyncio.gather(self.assets(), self.twins(devices))
        return Snapshot(assets, twins)

    async def _activity(self) -> tuple[int, ...]:
        pending = len(await self.asset_events("pending"))
        newest = await self.asset_events()
        for hub in self._cursor:
            await self.new_hub_events(hub)
        return (pending, newest[-1]["seq"] if newest else 0, *self._cursor.values())

    async def settle(self, within: float = 180) -> None:
        """No asset event pending and no new asset or twin event for QUIET_SECONDS."""
        async with asyncio.timeout(within):
            last = await self._activity()
            stable_since = time.monotonic()
            while last[0] or time.monotonic() - stable_since < QUIET_SECONDS:
                await asyncio.sleep(0.25)
                now = await self._activity()
                if now != last:
                    last, stable_since = now, time.monotonic()


def _sas_token(connection_string: str) -> str:
    """A service SAS token made by the SDK's own code (valid for an hour)."""
    from azure.iot.hub.connection_string import ConnectionString
    from azure.iot.hub.sastoken import SasToken

    parts = ConnectionString(connection_string)
    return str(
        SasToken(
            parts["HostName"], parts["SharedAccessKey"], parts["SharedAccessKeyName"], ttl=3600
        )
    )


async def until(probe: Callable[[], Awaitable[bool]], within: float, every: float = 0.05) -> None:
    async with asyncio.timeout(within):
        while True:
            if await probe():
                return
            await asyncio.sleep(every)


# --- fleet ----------------------------------------------------------------------------------------


def fleet(tag: str) -> list[Device]:
    """Alternating regions, so consecutive devices (and every batch) span both hubs."""
    return [
        Device(
            device_id=f"sb-{tag}-{i:04d}",
            asset_id=f"AST-SB-{tag.upper()}-{i:04d}",
            serial=f"SN-SB-{tag.upper()}-{i:04d}",
            region=list(REGIONS)[i % 2],
            index=i,
        )
        for i in range(DEVICES)
    ]


async def onboard(rig: SyncRig, devices: list[Device]) -> dict[str, Any]:
    await asyncio.gather(
        *(rig.put_asset(d, rig.location(d.region, f"line-{d.index % 7}")) for d in devices)
    )
    ca = rig.stack.ca
    cert_dir = rig.stack.work_dir / "certs"
    files = {
        d.device_id: ca.issue_device(d.device_id, serial_number=d.serial).write(
            cert_dir, d.device_id
        )
        for d in devices
    }
    gate = asyncio.Semaphore(ONBOARD_CONCURRENCY)
    dps = rig.d["dps"]

    async def register(device: Device) -> None:
        cert, key = files[device.device_id]
        async with gate:
            result = await register_device(
                host=dps["host"],
                port=dps["port"],
                id_scope=dps["idScope"],
                registration_id=device.device_id,
                cert_file=cert,
                key_file=key,
                ca_file=Path(rig.d["tls"]["caCert"]),
            )
        if result.status != "assigned" or result.assigned_hub != device.hub:
            raise RuntimeError(f"{device.device_id}: {result.status} {result.registration_state}")

    started = time.perf_counter()
    await asyncio.gather(*(register(device) for device in devices))
    registered = time.perf_counter() - started
    await rig.settle()
    return {
        "devices": len(devices),
        "perHub": {hub: sum(d.hub == hub for d in devices) for hub in REGIONS.values()},
        "registerSeconds": registered,
        "registrationsPerSecond": len(devices) / registered,
    }


# --- twin -> asset --------------------------------------------------------------------------------


def twin_change_events(
    devices: list[Device], twins: dict[str, dict[str, Any]], values: list[str], first_sequence: int
) -> list[dict[str, Any]]:
    """One reported firmwareVersion per device per value, round by round, as the emulator
    would emit them had each device reported it (its own code builds body and message)."""
    states = {
        d.device_id: TwinState.from_json(
            {
                "version": twins[d.device_id]["version"],
                "tags": twins[d.device_id]["tags"],
                "desired": twins[d.device_id]["properties"]["desired"],
                "reported": twins[d.device_id]["properties"]["reported"],
            }
        )
        for d in devices
    }
    events: list[dict[str, Any]] = []
    for value in values:
        for device in devices:
            now = format_timestamp(utc_now())
            change = update_reported(states[device.device_id], {"firmwareVersion": value}, now)
            states[device.device_id] = change.state
            notification = TwinChangeNotification(
                hub_name=short_name(device.hub),
                device_id=device.device_id,
                op_type=change.op_type,
                body=change.body,
                operation_timestamp=now,
            )
            sequence = first_sequence + len(events)
            events.append(
                notification.to_event(sequence_number=sequence, offset=sequence, enqueued_time=now)
            )
    return events


async def firmware_applied(rig: SyncRig, devices: list[Device], value: str) -> bool:
    assets = await rig.assets()
    return all(assets[d.asset_id]["attributes"].get("firmwareVersion") == value for d in devices)


async def twin_to_asset_run(rig: SyncRig, devices: list[Device], run: int) -> dict[str, Any]:
    rounds = EVENTS // len(devices)
    values = [f"{run + 1}.{k}.0-{rig.tag}" for k in range(rounds)]
    before = await rig.snapshot(devices)
    events = twin_change_events(devices, before.twins, values, first_sequence=(run + 1) * 1_000_000)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    assert all(len({e["properties"]["deviceId"] for e in b}) == len(b) == BATCH for b in batches)

    started = time.perf_counter()
    for batch in batches:
        await rig.deliver(batch)
    await until(lambda: firmware_applied(rig, devices, values[-1]), within=60)
    elapsed = time.perf_counter() - started

    await rig.settle()
    after = await rig.snapshot(devices)
    writes = writes_between(before, after, devices)
    return {
        "events": len(events),
        "batches": len(batches),
        "effectiveChanges": len(events),
        "elapsedSeconds": elapsed,
        "assetWritesPerSecond": len(events) / elapsed,
        "writes": writes.as_json(),
        "amplification": (writes.assets + writes.sync_twin) / len(events),
        "lastBatch": batches[-1],
    }


async def twin_to_asset_noops(
    rig: SyncRig, devices: list[Device], last_batch: list[dict[str, Any]]
) -> dict[str, Any]:
    """A batch delivered again, then real device reports of values the assets already hold."""
    before = await rig.snapshot(devices)
    await rig.deliver(last_batch)
    await rig.settle()
    replay = writes_between(before, await rig.snapshot(devices), devices)

    quiet, sentinels = devices[:NOOP_DEVICES], devices[NOOP_DEVICES : NOOP_DEVICES + len(REGIONS)]
    before = await rig.snapshot(devices)
    await asyncio.gather(
        *(
            rig.report(
                d, {"firmwareVersion": before.assets[d.asset_id]["attributes"]["firmwareVersion"]}
            )
            for d in quiet
        )
    )
    # The emulator delivers each hub's events in order: a sentinel's asset changing means the
    # identical reports before it on that hub were processed.
    health = f"sentinel-{rig.tag}"
    await asyncio.gather(*(rig.report(d, {"health": health}) for d in sentinels))

    async def sentinels_seen() -> bool:
        assets = await rig.assets()
        return all(assets[d.asset_id]["attributes"].get("health") == health for d in sentinels)

    await until(sentinels_seen, within=60, every=0.1)
    await rig.settle()
    after = await rig.snapshot(devices)
    reports = writes_between(before, after, quiet)
    sentinel_writes = writes_between(before, after, sentinels)
    return {
        "replayedEvents": len(last_batch),
        "replayWrites": replay.as_json(),
        "identicalReports": len(quiet),
        "identicalReportWrites": reports.as_json(),
        "sentinelReports": len(sentinels),
        "sentinelWrites": sentinel_writes.as_json(),
    }


# --- asset -> twin --------------------------------------------------------------------------------


async def twins_show(rig: SyncRig, wanted: dict[str, str], seen: set[str]) -> bool:
    """Read new notifications; a device counts once a sync write set its wanted location."""
    for hub in REGIONS.values():
        for event in await rig.new_hub_events(hub):
            device_id = event["properties"]["deviceId"]
            location = _json_body(event).get("tags", {}).get("location")
            if device_id in wanted and location == wanted[device_id]:
                seen.add(device_id)
    return len(seen) == len(wanted)


def _json_body(event: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(event["body"])
    return body


async def asset_to_twin_run(
    rig: SyncRig, devices: list[Device], run: int, parallel: int = 0
) -> dict[str, Any]:
    """parallel > 0: the bench also delivers the asset service's own events, that many at a
    time, as Event Grid does (the devstack publisher has one request of <= 10 in flight)."""
    before = await rig.snapshot(devices)
    wanted = {
        d.device_id: rig.location(d.region, f"run-{run + 1}/line-{d.index % 7}") for d in devices
    }
    for hub in REGIONS.values():
        await rig.new_hub_events(hub)  # move the cursors past everything before this run
    seen: set[str] = set()

    started = time.perf_counter()
    patched = await asyncio.gather(
        *(
            rig.patch_asset(
                d.asset_id, {"location": wanted[d.device_id]}, before.assets[d.asset_id]["version"]
            )
            for d in devices
        )
    )
    patches_done = time.perf_counter() - started
    versions = dict(zip((d.asset_id for d in devices), patched, strict=True))
    if parallel:
        events = await rig.change_events_of(versions)
        await rig.deliver_asset_events([item["event"] for item in events], parallel)
    await until(lambda: twins_show(rig, wanted, seen), within=120)
    elapsed = time.perf_counter() - started

    await rig.settle()
    after = await rig.snapshot(devices)
    writes = writes_between(before, after, devices)
    echo_asset_writes = writes.assets - len(devices)
    return {
        "effectiveChanges": len(devices),
        "parallelDeliveries": parallel,
        "patchSeconds": patches_done,
        "elapsedSeconds": elapsed,
        "twinWritesPerSecond": len(devices) / elapsed,
        "writes": writes.as_json(),
        "echoAssetWrites": echo_asset_writes,
        "amplification": (writes.sync_twin + echo_asset_writes) / len(devices),
        "patchedVersions": versions,
    }


async def asset_to_twin_noops(
    rig: SyncRig, devices: list[Device], patched_versions: dict[str, int]
) -> dict[str, Any]:
    """Identical PATCHes, then the last run's change events delivered a second time."""
    before = await rig.snapshot(devices)
    same = devices[:NOOP_DEVICES]
    await asyncio.gather(
        *(
            rig.patch_asset(
                d.asset_id,
                {"location": before.assets[d.asset_id]["location"]},
                before.assets[d.asset_id]["version"],
            )
            for d in same
        )
    )
    await rig.settle()
    identical = writes_between(before, await rig.snapshot(devices), devices)

    ids = [item["id"] for item in await rig.change_events_of(patched_versions)]
    before = await rig.snapshot(devices)
    await rig.redeliver(ids)
    await rig.settle()
    redelivered = writes_between(before, await rig.snapshot(devices), devices)
    return {
        "identicalPatches": len(same),
        "identicalPatchWrites": identical.as_json(),
        "redeliveredEvents": len(ids),
        "redeliveredWrites": redelivered.as_json(),
    }


# --- the benchmark --------------------------------------------------------------------------------


def _medians(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in keys} | {"runs": runs}


async def _twin_to_asset(rig: SyncRig, devices: list[Device]) -> dict[str, Any]:
    runs = [await twin_to_asset_run(rig, devices, run) for run in range(RUNS)]
    noops = await twin_to_asset_noops(rig, devices, runs[-1]["lastBatch"])
    for run in runs:
        del run["lastBatch"]
    return {
        "events": EVENTS,
        "batchSize": BATCH,
        "how": "emulator-built notifications POSTed to the host's Event Hub endpoint",
        **_medians(runs, ("elapsedSeconds", "assetWritesPerSecond", "amplification")),
        "noops": noops,
    }


async def _asset_to_twin(rig: SyncRig, devices: list[Device]) -> dict[str, Any]:
    keys = ("elapsedSeconds", "patchSeconds", "twinWritesPerSecond", "amplification")
    serial = [await asset_to_twin_run(rig, devices, run) for run in range(RUNS)]
    noops = await asset_to_twin_noops(rig, devices, serial[-1]["patchedVersions"])
    parallel = [
        await asset_to_twin_run(rig, devices, run, PARALLEL_DELIVERIES)
        for run in range(RUNS, 2 * RUNS)
    ]
    for run in serial + parallel:
        del run["patchedVersions"]
    per_hub = len(devices) / len(REGIONS)
    return {
        "changes": len(devices),
        "hubs": len(REGIONS),
        "hubBoundPerSecond": HUB_TWIN_RATE * len(REGIONS),
        "appLimitPerSecond": APP_TWIN_RATE * len(REGIONS),
        # The app's buckets start full (one second's worth), so a run of this size may beat
        # the sustained limit a little.
        "appCeilingThisSizePerSecond": len(devices) / ((per_hub - APP_TWIN_RATE) / APP_TWIN_RATE),
        "devstackDelivery": _medians(serial, keys),
        "parallelDelivery": _medians(parallel, keys),
        "noops": noops,
    }


async def _bench(stack: RunningStack) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    devices = fleet(tag)
    connector = client_connector(limit=HTTP_CONCURRENCY * 2)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        rig = SyncRig(stack, session, tag)
        onboarding = await onboard(rig, devices)
        to_asset = await _twin_to_asset(rig, devices)
        to_twin = await _asset_to_twin(rig, devices)
    return {"devices": onboarding, "runs": RUNS, "twinToAsset": to_asset, "assetToTwin": to_twin}


def run() -> dict[str, Any]:
    with running_stack(IOT_HUB_TWIN_UPDATES_PER_SECOND=str(APP_TWIN_RATE)) as stack:
        return asyncio.run(_bench(stack))


def _median_writes(runs: list[dict[str, Any]], key: str) -> str:
    return f"{statistics.median(run['writes'][key] for run in runs):.0f}"


def _table(result: dict[str, Any]) -> Table:
    """Writes are the sync's own: asset writes, and twin writes counted by desired $version."""
    to_asset, to_twin = result["twinToAsset"], result["assetToTwin"]
    table = Table(title=f"sync, {result['devices']['devices']} devices, 2 hubs (median of runs)")
    table.add_column("")
    for column in ("changes", "seconds", "writes/s", "asset w.", "twin w.", "ampl."):
        table.add_column(column, justify="right")
    table.add_row(
        f"twin->asset ({EVENTS // BATCH}x{BATCH})",
        str(EVENTS),
        f"{to_asset['elapsedSeconds']:.2f}",
        f"{to_asset['assetWritesPerSecond']:.0f}",
        _median_writes(to_asset["runs"], "assets"),
        _median_writes(to_asset["runs"], "syncTwin"),
        f"{to_asset['amplification']:.2f}",
    )
    for key, label in (
        ("devstackDelivery", "asset->twin"),
        ("parallelDelivery", f"asset->twin, {PARALLEL_DELIVERIES} parallel"),
    ):
        figures = to_twin[key]
        table.add_row(
            label,
            str(to_twin["changes"]),
            f"{figures['elapsedSeconds']:.2f}",
            f"{figures['twinWritesPerSecond']:.0f}",
            f"{statistics.median(run['echoAssetWrites'] for run in figures['runs']):.0f}",
            _median_writes(figures["runs"], "syncTwin"),
            f"{figures['amplification']:.2f}",
        )
    noops, more = to_asset["noops"], to_twin["noops"]
    for label, sent, writes in (
        ("no-op: batch twice", noops["replayedEvents"], noops["replayWrites"]),
        (
            "no-op: same reports",
            noops["identicalReports"],
            noops["identicalReportWrites"],
        ),
        ("no-op: same patches", more["identicalPatches"], more["identicalPatchWrites"]),
        ("no-op: events again", more["redeliveredEvents"], more["redeliveredWrites"]),
    ):
        table.add_row(
            label, f"0 of {sent}", "", "", str(writes["assets"]), str(writes["syncTwin"]), ""
        )
    return table


def main(console: Console) -> dict[str, Any]:
    result = run()
    path = write_result("sync", result)
    console.print(_table(result))
    onboarding = result["devices"]
    console.print(
        f"onboarded {onboarding['devices']} devices through DPS in"
        f" {onboarding['registerSeconds']:.1f} s ({onboarding['registrationsPerSecond']:.0f}/s)"
    )
    to_twin = result["assetToTwin"]
    console.print(
        f"twin write bound over {to_twin['hubs']} hubs: {to_twin['hubBoundPerSecond']:.0f}/s"
        f" (emulator, {HUB_TWIN_RATE:.0f}/s per hub), {to_twin['appLimitPerSecond']:.0f}/s"
        f" (the app's limiter, {APP_TWIN_RATE:.0f}/s per hub; its initial burst allows"
        f" {to_twin['appCeilingThisSizePerSecond']:.0f}/s for {to_twin['changes']} writes)"
    )
    console.print(f"written to {path}")
    return result


if __name__ == "__main__":
    main(Console())
