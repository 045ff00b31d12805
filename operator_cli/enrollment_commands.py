"""`python -m operator_cli enrollment {plan,apply,list}`: the repository's enrollment groups in DPS.

plan reads the group files, fills in the deployment's webhook URL, function key and CA
certificates, reads each group from DPS and shows what apply would create or update; apply
does it, each update with the etag it read as If-Match (a group changed in between fails with
412 rather than being overwritten); list shows what DPS holds. Groups in DPS that no file
names are left alone.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from operator_cli import dps_config
from operator_cli.dps_service import DpsService
from operator_cli.enrollment_desired import desired_record, webhook_url
from operator_cli.enrollment_files import CertificateRef, GroupTemplate, load_templates
from operator_cli.enrollment_plan import PlannedGroup, plan
from operator_cli.enrollment_rendering import groups_json, groups_table, plan_table
from operator_cli.errors import ConfigurationError, OperatorError
from operator_cli.local_ca import ensure_ca

if TYPE_CHECKING:
    from operator_cli.commands import Context

_ENV_HELP = f"""\
environment: {dps_config.DPS_CONNECTION_ENV} (SAS) or {dps_config.DPS_SERVICE_HOST_ENV} (Entra ID),
{dps_config.DPS_CA_BUNDLE_ENV}, {dps_config.WEBHOOK_URL_ENV}, {dps_config.FUNCTION_KEY_ENV} or
{dps_config.FUNCTION_KEY_FILE_ENV}, {dps_config.GROUPS_DIR_ENV}, {dps_config.CA_DIR_ENV},
{dps_config.LOCAL_CA_DIR_ENV} (docs/enrollment-and-smoke.md)
"""


def add_enrollment_commands(
    areas: argparse._SubParsersAction[argparse.ArgumentParser], *, epilog: str
) -> None:
    enrollment = areas.add_parser(
        "enrollment",
        help="the repository's enrollment groups in DPS: plan, apply, list",
        description=__doc__,
        epilog=_ENV_HELP + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument(
        "--groups-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help=f"group files (repeatable; default: ${dps_config.GROUPS_DIR_ENV}, else "
        f"{dps_config.DEFAULT_GROUPS_DIR})",
    )
    files.add_argument(
        "--ca-dir",
        type=Path,
        metavar="DIR",
        help=f'NAME.pem for "ca:NAME" (default: ${dps_config.CA_DIR_ENV}, else '
        f"{dps_config.DEFAULT_CA_DIR})",
    )
    files.add_argument(
        "--local-ca-dir",
        type=Path,
        metavar="DIR",
        help=f'the CAs kept here for "local-ca:NAME" (default: ${dps_config.LOCAL_CA_DIR_ENV}, '
        f"else {dps_config.DEFAULT_LOCAL_CA_DIR})",
    )
    files.add_argument(
        "--webhook-url",
        metavar="URL",
        help=f"the allocation function's URL, without its key (default: "
        f"${dps_config.WEBHOOK_URL_ENV})",
    )
    files.add_argument(
        "--function-key-file",
        type=Path,
        metavar="FILE",
        help=f"a file holding the function key (default: ${dps_config.FUNCTION_KEY_ENV} or "
        f"${dps_config.FUNCTION_KEY_FILE_ENV}); never give the key itself on a command line",
    )
    actions = enrollment.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "plan", parents=[files], help="what apply would change, with a diff", epilog=epilog
    )
    apply = actions.add_parser(
        "apply", parents=[files], help="create or update the groups in DPS", epilog=epilog
    )
    apply.add_argument("--json", action="store_true", help="the outcome as JSON")
    listing = actions.add_parser("list", help="the groups DPS holds", epilog=epilog)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")


def plan_groups(ctx: Context) -> int:
    entries = _planned(ctx, apply=False)
    ctx.out.print(plan_table(entries))
    return 0


def apply_groups(ctx: Context) -> int:
    entries = _planned(ctx, apply=True)
    if ctx.args.json:
        ctx.out.file.write(
            groups_json([{"enrollmentGroupId": e.group_id, "action": e.action} for e in entries])
            + "\n"
        )
    else:
        ctx.out.print(plan_table(entries, applied=True))
    return 0


def list_groups(ctx: Context) -> int:
    target = dps_config.service_target(ctx.environ)
    groups = asyncio.run(_all_groups(target))
    if ctx.args.json:
        ctx.out.file.write(groups_json(groups) + "\n")
    else:
        ctx.out.print(groups_table(groups))
    return 0


def _planned(ctx: Context, *, apply: bool) -> list[PlannedGroup]:
    args, environ = ctx.args, ctx.environ
    directories = args.groups_dir or [
        dps_config.directory(
            None, environ, dps_config.GROUPS_DIR_ENV, dps_config.DEFAULT_GROUPS_DIR
        )
    ]
    templates = load_templates([_rooted(ctx.cwd, d) for d in directories])
    if not templates:
        raise ConfigurationError(
            f"no enrollment group files (*.json) in {', '.join(map(str, directories))}"
        )
    hook = dps_config.webhook(args.webhook_url, args.function_key_file, environ)
    if hook.function_key is None:
        ctx.err.print(
            f"note: no function key ({dps_config.FUNCTION_KEY_ENV} and "
            f"{dps_config.FUNCTION_KEY_FILE_ENV} unset): the webhook URL carries none",
            style="yellow",
            highlight=False,
            markup=False,
        )
    url = webhook_url(hook.url, hook.function_key)
    certificates = _certificates(ctx, templates)
    desired = [
        desired_record(t, webhook=url, certificates=certificates[t.group_id]) for t in templates
    ]
    target = dps_config.service_target(environ)
    try:
        return asyncio.run(_plan_and_apply(target, desired, apply=apply))
    except OperatorError as exc:
        if hook.function_key and hook.function_key in str(exc):
            raise OperatorError(str(exc).replace(hook.function_key, "****")) from None
        raise


async def _plan_and_apply(
    target: dps_config.ServiceTarget, desired: list[dict[str, Any]], *, apply: bool
) -> list[PlannedGroup]:
    async with DpsService(target.host_name, target.auth, ca_bundle=target.ca_bundle) as dps:
        actual = {
            r["enrollmentGroupId"]: await dps.get_group(r["enrollmentGroupId"]) for r in desired
        }
        entries = plan(desired, actual)
        if apply:
            for entry in entries:
                if entry.action != "unchanged":
                    await dps.put_group(entry.desired, entry.etag)
        return entries


async def _all_groups(target: dps_config.ServiceTarget) -> list[dict[str, Any]]:
    async with DpsService(target.host_name, target.auth, ca_bundle=target.ca_bundle) as dps:
        return [group async for group in dps.groups()]


def _certificates(ctx: Context, templates: list[GroupTemplate]) -> dict[str, dict[str, str]]:
    """Each group's signing certificates as PEM, slot by slot."""
    environ = ctx.environ
    ca_dir = _rooted(
        ctx.cwd,
        dps_config.directory(
            ctx.args.ca_dir, environ, dps_config.CA_DIR_ENV, dps_config.DEFAULT_CA_DIR
        ),
    )
    local_dir = _rooted(
        ctx.cwd,
        dps_config.directory(
            ctx.args.local_ca_dir,
            environ,
            dps_config.LOCAL_CA_DIR_ENV,
            dps_config.DEFAULT_LOCAL_CA_DIR,
        ),
    )
    return {
        t.group_id: {
            slot: _pem(t, slot, ref, ca_dir, local_dir) for slot, ref in t.certificates.items()
        }
        for t in templates
    }


def _pem(
    template: GroupTemplate, slot: str, ref: CertificateRef, ca_dir: Path, local_dir: Path
) -> str:
    if ref.kind == "pem":
        return ref.value
    if ref.kind == "local-ca":
        return ensure_ca(local_dir, ref.value).pem
    path = ca_dir / f"{ref.value}.pem"
    try:
        pem = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(
            f"enrollment group file {template.path}: attestation.x509.signingCertificates."
            f"{slot}.certificate: names CA {ref.value!r}, but {path} cannot be read"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigurationError(f"{path} holds no PEM certificate")
    return pem


def _rooted(cwd: Path, path: Path) -> Path:
    return path if path.is_absolute() else cwd / path


ENROLLMENT_ACTIONS: Mapping[tuple[str, str], Callable[[Context], int]] = {
    ("enrollment", "plan"): plan_groups,
    ("enrollment", "apply"): apply_groups,
    ("enrollment", "list"): list_groups,
}
