"""`python -m operator_cli explain <registration-id>`: why a device got its hub and role.

Takes the registration's last recorded allocation from the audit trail, looks its asset up
again (read-only) and replays the pure policy decision against today's asset and policy.
Nothing is written anywhere: no link, no queue message, no audit entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table

from allocation.attestation import read_identity
from allocation.contract import AllocationRequest
from allocation.decision import AllocationDecision, decide_allocation
from allocation.errors import AllocationError
from asset_client import Asset, AssetError
from asset_client.http_adapter import HttpAssetRepository
from audit import AuditEntry
from audit.table_access import AuditTable
from audit.timeline import AuditTimelines
from operator_cli import config
from operator_cli.errors import ConfigurationError, OperatorError
from policies import Policy, PolicyError, load_policy

_ALLOCATION_ACTIONS = ("allocation.decided", "allocation.fallback", "allocation.refused")
_DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "demo.toml"


def add_explain_command(
    areas: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    connection_help: str,
    epilog: str,
) -> None:
    parser = areas.add_parser(
        "explain",
        help="why a registration got its hub and role; replays the decision, writes nothing",
        description=__doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("registration_id", metavar="REGISTRATION-ID")
    parser.add_argument("--connection-string", metavar="TEXT", help=connection_help)
    parser.add_argument("--table", metavar="NAME", help="audit table (default: $AUDIT_TABLE)")
    parser.add_argument("--asset-api", metavar="URL", help="default: $ASSET_API_URL or stack.json")
    parser.add_argument("--policy", metavar="FILE", type=Path, help="default: $POLICY_FILE")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(action="run")


@dataclass(frozen=True)
class Replay:
    recorded: AuditEntry
    asset: Asset | None
    found_by: str | None
    decision: AllocationDecision | None
    refusal: AllocationError | None


def explain(ctx: Any) -> int:
    args = ctx.args
    connection = config.resolve_connection(args.connection_string, ctx.environ, ctx.cwd)
    store = AuditTimelines(
        AuditTable(
            connection.clients(timeout_seconds=10),
            config.table_from(args.table, ctx.environ),
            owns_storage=True,
        )
    )
    policy = _policy(args.policy, ctx.environ)
    asset_url, asset_key = _asset_api(args.asset_api, ctx.environ, ctx.cwd)
    replay = asyncio.run(_replay(store, args.registration_id, policy, asset_url, asset_key))
    if args.json:
        ctx.out.file.write(json.dumps(_as_json(replay), indent=2, default=str) + "\n")
    else:
        ctx.out.print(_table(replay))
    return 0


async def _replay(
    store: AuditTimelines, registration_id: str, policy: Policy, url: str, key: str | None
) -> Replay:
    async with store:
        timeline = await store.by_registration(registration_id, 200)
    decisions = [entry for entry in timeline.entries if entry.action in _ALLOCATION_ACTIONS]
    if not decisions:
        raise OperatorError(f"no allocation of registration {registration_id!r} is on the trail")
    recorded = decisions[-1]
    details = recorded.details
    serial = details.get("subjectSerialNumber")
    device_id = recorded.device_id or registration_id
    assets = HttpAssetRepository(url, api_key=key, timeout_seconds=10)
    try:
        found_by = None
        matches = await assets.find_by_device_id(device_id)
        if matches:
            found_by = f"device id {device_id}"
        elif serial:
            matches = await assets.find_by_serial_number(serial)
            found_by = f"subject serialNumber {serial}" if matches else None
    except AssetError as exc:
        raise OperatorError(f"the asset API at {url} could not be read: {exc}") from None
    finally:
        await assets.aclose()
    asset = matches[0] if len(matches) == 1 else None
    subject = f"CN={registration_id}" + (f", SERIALNUMBER={serial}" if serial else "")
    hubs = details.get("linkedHubs") or sorted({rule.hub for rule in policy.hub_rules})
    request = AllocationRequest.model_validate(
        {
            "enrollmentGroup": {"enrollmentGroupId": "explain"},
            "deviceRuntimeContext": {
                "registrationId": registration_id,
                "x509": {"subjectName": subject},
                **(
                    {"currentIotHubHostName": details["currentHub"]}
                    if details.get("currentHub")
                    else {}
                ),
            },
            "linkedHubs": hubs,
        }
    )
    try:
        identity = read_identity(
            request.device_runtime_context,
            request.enrollment,
            now=datetime.now(UTC),
            clock_skew=timedelta(seconds=policy.attestation.clock_skew_seconds),
        )
        decision = decide_allocation(
            request=request, identity=identity, asset=asset, policy=policy, asset_api_public_url=url
        )
    except AllocationError as refusal:
        return Replay(recorded, asset, found_by, None, refusal)
    return Replay(recorded, asset, found_by, decision, None)


def _table(replay: Replay) -> Table:
    recorded, details = replay.recorded, replay.recorded.details
    table = Table(
        title=f"explain {recorded.registration_id}: recorded {recorded.at:%Y-%m-%d %H:%M:%S} UTC "
        f"({recorded.action}) vs. a replay now",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("recorded", overflow="fold")
    table.add_column("replayed now", overflow="fold")
    now = replay.decision
    rows = [
        ("outcome", recorded.outcome, "allocated" if now else f"refused: {replay.refusal}"),
        (
            "asset",
            recorded.asset_id,
            f"{replay.asset.asset_id} (by {replay.found_by})" if replay.asset else "none",
        ),
        ("hub", recorded.hub, now.hub.hub if now else ""),
        ("hub because", details.get("hubReason"), now.hub.reason if now else ""),
        ("role", details.get("role"), now.role.role.value if now else ""),
        (
            "role because",
            f"{details.get('roleReason')} {details.get('rolePattern') or ''}".strip(),
            f"{now.role.reason} {now.role.matched_pattern or ''}".strip() if now else "",
        ),
        (
            "provisioningState",
            details.get("provisioningState"),
            now.provisioning_state.value if now else "",
        ),
        (
            "policy version",
            details.get("policyVersion"),
            now.response.initial_twin.tags.policy_version if now else "",
        ),
    ]
    for name, before, after in rows:
        mark = "" if str(before) == str(after) or not after else "  [yellow](changed)[/yellow]"
        table.add_row(name, str(before or ""), f"{after}{mark}")
    for field, source in sorted((details.get("identitySources") or {}).items()):
        table.add_row(f"  {field} from", source, "")
    if details.get("fallback"):
        table.add_row("fallback", f"yes: {details.get('outage')}", "")
    return table


def _as_json(replay: Replay) -> dict[str, Any]:
    now = replay.decision
    return {
        "registrationId": replay.recorded.registration_id,
        "recorded": replay.recorded.to_message(),
        "replay": {
            "asset": replay.asset.asset_id if replay.asset else None,
            "foundBy": replay.found_by,
            "refusal": str(replay.refusal) if replay.refusal else None,
            "hub": now.hub.hub if now else None,
            "hubReason": now.hub.reason if now else None,
            "role": now.role.role.value if now else None,
            "roleReason": now.role.reason if now else None,
            "rolePattern": now.role.matched_pattern if now else None,
        },
    }


def _policy(flag: Path | None, environ: Any) -> Policy:
    path = flag or Path(environ.get("POLICY_FILE") or _DEFAULT_POLICY)
    if not path.is_absolute() and not path.exists():
        path = _DEFAULT_POLICY.parents[1] / path
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise ConfigurationError(str(exc)) from None


def _asset_api(flag: str | None, environ: Any, cwd: Path) -> tuple[str, str | None]:
    if flag:
        return flag, environ.get("ASSET_API_KEY")
    if environ.get("ASSET_API_URL"):
        return str(environ["ASSET_API_URL"]), environ.get("ASSET_API_KEY")
    stack = cwd / config.STACK_FILE
    if stack.exists():
        description = json.loads(stack.read_text())
        return str(description["assetApi"]), description.get("assetApiKey")
    raise ConfigurationError(
        "no asset API: pass --asset-api, set ASSET_API_URL, or run the local stack "
        f"({config.STACK_FILE})"
    )


__all__ = ["add_explain_command", "explain"]
