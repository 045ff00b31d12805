"""`python -m operator_cli smoke`: one throwaway device through the deployed onboarding, then gone.

Steps: put the smoke asset in its starting state; register a new device over DPS's device API
with a certificate from the smoke CA (mutual TLS); check the hub DPS assigned, the device on
that hub, its initial twin, the asset's link and the audit trail's entry; then remove the
device from its hub, its DPS registration record, and the asset's link. Cleanup runs whatever
failed before it. Exit code 0 when every check passed and everything was removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.text import Text

from app_errors import AppError
from audit.table_access import AuditTable
from audit.timeline import AuditTimelines
from iothub_client import DeviceNotFound
from iothub_client.sdk_adapter import SdkIotHubRegistry
from operator_cli import config, dps_config
from operator_cli.dps_service import DpsService
from operator_cli.enrollment_files import load_template
from operator_cli.errors import ConfigurationError, OperatorError
from operator_cli.hub_config import hub_registry
from operator_cli.local_ca import LocalCa, issue_device, load_ca
from operator_cli.smoke_assets import SmokeAssets
from operator_cli.smoke_checks import CheckFailed, asset_link, assignment, audit_entry, initial_twin
from operator_cli.smoke_config import (
    DEFAULT_GROUP_FILE,
    GROUP_FILE_ENV,
    SmokeSettings,
    smoke_settings,
)
from operator_cli.smoke_device import register

if TYPE_CHECKING:
    from operator_cli.commands import Context

T = TypeVar("T")
AUDIT_POLL_SECONDS = 1.0
_FAILURES = (CheckFailed, AppError, OSError)


class SmokeFailed(OperatorError):
    """A check failed or cleanup left something behind; the message names it."""


@dataclass
class _Run:
    out: Console
    failures: list[str]

    async def step(self, name: str, action: Awaitable[T], done: Callable[[T], str]) -> T:
        with self.out.status(Text(name)):
            try:
                result = await action
            except _FAILURES as exc:
                self.out.print(Text("✗ ", style="bold red") + Text(f"{name}: {exc}"))
                self.failures.append(f"{name}: {exc}")
                raise _Stop from None
        self.out.print(Text("✓ ", style="bold green") + Text(f"{name}: {done(result)}"))
        return result


class _Stop(Exception):
    """A step failed and said so; the run goes on to cleanup."""


def add_smoke_command(
    areas: argparse._SubParsersAction[argparse.ArgumentParser], *, epilog: str
) -> None:
    smoke = areas.add_parser(
        "smoke",
        help="register a throwaway device end to end, check it, remove it",
        description=__doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    smoke.set_defaults(action="run")
    smoke.add_argument(
        "--group-file",
        type=Path,
        metavar="FILE",
        help=f"the smoke enrollment group's file (default: ${GROUP_FILE_ENV}, else "
        f"{DEFAULT_GROUP_FILE})",
    )
    smoke.add_argument(
        "--local-ca-dir",
        type=Path,
        metavar="DIR",
        help=f"where `enrollment apply` keeps the smoke CA (default: "
        f"${dps_config.LOCAL_CA_DIR_ENV}, else {dps_config.DEFAULT_LOCAL_CA_DIR})",
    )


def run_smoke(ctx: Context) -> int:
    environ = ctx.environ
    settings = smoke_settings(environ)
    group_file = ctx.args.group_file or Path(
        environ.get(GROUP_FILE_ENV, "").strip() or DEFAULT_GROUP_FILE
    )
    template = load_template(group_file if group_file.is_absolute() else ctx.cwd / group_file)
    reference = template.certificates.get("primary")
    if reference is None or reference.kind != "local-ca":
        raise ConfigurationError(
            f'{group_file}: the smoke group\'s primary certificate must be "local-ca:NAME", '
            "the CA this tool keeps and issues the smoke device's certificate from"
        )
    local_dir = dps_config.directory(
        ctx.args.local_ca_dir,
        environ,
        dps_config.LOCAL_CA_DIR_ENV,
        dps_config.DEFAULT_LOCAL_CA_DIR,
    )
    local_dir = local_dir if local_dir.is_absolute() else ctx.cwd / local_dir
    ca = load_ca(local_dir, reference.value)
    if ca is None:
        raise ConfigurationError(
            f"no smoke CA {reference.value!r} in {local_dir}: run `python -m operator_cli "
            "enrollment apply` first (it creates the CA and puts it in the smoke group)"
        )
    hubs = [str(hub) for hub in template.record.get("iotHubs", [])]
    target = dps_config.service_target(environ)
    registry = hub_registry(environ)
    storage = config.resolve_connection(None, environ, ctx.cwd)
    table = config.table_from(None, environ)
    timelines = AuditTimelines(
        AuditTable(storage.clients(timeout_seconds=10), table, owns_storage=True)
    )
    registration_id = f"smoke-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}-{os.urandom(3).hex()}"
    ctx.out.print(
        Text(
            f"smoke test: device {registration_id} in group {template.group_id} "
            f"via {settings.device_endpoint}",
            style="bold",
        )
    )
    run = _Run(ctx.out, [])
    asyncio.run(_smoke(run, settings, target, registry, timelines, ca, registration_id, hubs))
    if run.failures:
        raise SmokeFailed("smoke test failed: " + "; ".join(run.failures))
    ctx.out.print(Text("smoke test passed; nothing left behind", style="bold green"))
    return 0


async def _smoke(
    run: _Run,
    settings: SmokeSettings,
    target: dps_config.ServiceTarget,
    registry: SdkIotHubRegistry,
    timelines: AuditTimelines,
    ca: LocalCa,
    registration_id: str,
    hubs: list[str],
) -> None:
    serial = f"{settings.asset_id}-SN"
    content = {
        "serialNumber": serial,
        "assetType": settings.asset_type,
        "location": settings.asset_location,
        "status": "planned",
        "deviceId": None,
        "attributes": {"purpose": "post-deploy smoke test (python -m operator_cli smoke)"},
    }
    hub: str | None = None
    async with (
        SmokeAssets(settings.asset_api_url, settings.asset_auth, ca_bundle=None) as assets,
        DpsService(target.host_name, target.auth, ca_bundle=target.ca_bundle) as dps,
        timelines,
    ):
        try:
            await run.step(
                f"asset {settings.asset_id}",
                assets.ready(settings.asset_id, content),
                lambda _: f"ready, serial {serial}, no device linked",
            )
            device = issue_device(ca, registration_id, serial_number=serial)
            state = await run.step(
                "DPS registration",
                register(
                    endpoint=settings.device_endpoint,
                    id_scope=settings.id_scope,
                    registration_id=registration_id,
                    certificate=device,
                    ca_bundle=target.ca_bundle,
                    timeout=settings.timeout,
                ),
                lambda s: f"status {s.get('status')}",
            )
            hub = state.get("assignedHub") if isinstance(state.get("assignedHub"), str) else None
            assigned = await run.step(
                "assigned hub",
                _now(lambda: assignment(state, registration_id, hubs)),
                lambda a: f"{a.hub}",
            )
            await run.step(
                "device on its hub",
                registry.get_device(assigned.hub, assigned.device_id),
                lambda d: f"{d.device_id} {d.status}, {d.authentication_type}",
            )
            twin = await run.step(
                "twin read",
                registry.get_twin(assigned.hub, assigned.device_id),
                lambda t: f"version {t.version}",
            )
            await run.step(
                "initial twin",
                _now(
                    lambda: initial_twin(
                        twin.tags, twin.desired, settings.asset_id, assigned.payload
                    )
                ),
                lambda role: f"role {role}, asset {settings.asset_id}, provisioned",
            )
            found = await run.step(
                "asset read",
                assets.get(settings.asset_id),
                lambda a: "read" if a else "missing",
            )
            await run.step(
                "asset link",
                _now(lambda: asset_link(found[0] if found else {}, assigned.device_id)),
                lambda _: f"{settings.asset_id} -> {assigned.device_id}",
            )
            await run.step(
                "audit trail",
                _audit(timelines, assigned.device_id, assigned.hub, settings.timeout),
                lambda entry: f"{entry.action} at {entry.at:%H:%M:%S} ({entry.outcome})",
            )
        except _Stop:
            pass
        finally:
            await _cleanup(run, registry, dps, assets, settings, content, registration_id, hub)


async def _now(check: Callable[[], T]) -> T:
    """A pure check as a step."""
    return check()


async def _audit(timelines: AuditTimelines, device_id: str, hub: str, budget: float) -> Any:
    """The audit writer runs behind a queue: wait for the entry within the budget."""
    deadline = time.monotonic() + budget
    while True:
        timeline = await timelines.by_device(device_id, limit=50)
        entry = audit_entry(timeline.entries, device_id, hub)
        if entry is not None:
            return entry
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"no allocation.decided entry for {device_id} on {hub} in the audit table "
                f"after {budget:.0f} s"
            )
        await asyncio.sleep(AUDIT_POLL_SECONDS)


async def _cleanup(
    run: _Run,
    registry: SdkIotHubRegistry,
    dps: DpsService,
    assets: SmokeAssets,
    settings: SmokeSettings,
    content: dict[str, Any],
    registration_id: str,
    hub: str | None,
) -> None:
    if hub is None:
        # The registration may have gone on after the step gave up on it: DPS's record says
        # where the device went.
        hub = await _recorded_hub(dps, registration_id)
    if hub is not None:
        await _quietly(
            run, "remove device from hub", _delete_device(registry, hub, registration_id)
        )
    await _quietly(
        run,
        "remove DPS registration record",
        _delete_registration(dps, registration_id),
    )
    await _quietly(
        run,
        f"reset asset {settings.asset_id}",
        _reset(assets, settings.asset_id, content),
    )


async def _recorded_hub(dps: DpsService, registration_id: str) -> str | None:
    try:
        record = await dps.get_registration(registration_id)
    except OperatorError:
        return None
    hub = record.get("assignedHub") if record else None
    return hub if isinstance(hub, str) and hub else None


async def _quietly(run: _Run, name: str, action: Awaitable[str]) -> None:
    with contextlib.suppress(_Stop):
        await run.step(name, action, lambda detail: detail)


async def _delete_device(registry: SdkIotHubRegistry, hub: str, device_id: str) -> str:
    try:
        await registry.delete_device(hub, device_id)
    except DeviceNotFound:
        return f"{device_id} was not on {hub}"
    return f"{device_id} deleted from {hub}"


async def _delete_registration(dps: DpsService, registration_id: str) -> str:
    if await dps.delete_registration(registration_id):
        return f"{registration_id} deleted"
    return f"DPS held no record of {registration_id}"


async def _reset(assets: SmokeAssets, asset_id: str, content: dict[str, Any]) -> str:
    await assets.ready(asset_id, content)
    return "no device linked, status planned"


SMOKE_ACTIONS: dict[tuple[str, str], Callable[[Context], int]] = {("smoke", "run"): run_smoke}
