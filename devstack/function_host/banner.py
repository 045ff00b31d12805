"""The function list printed at start-up, laid out like Core Tools' `func start`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from devstack.function_host.app_loader import EVENT_GRID_TRIGGER, FunctionSpec


def function_list(
    functions: Sequence[FunctionSpec],
    base_url: str,
    route_prefix: str,
    event_hubs: Mapping[str, str] | None = None,
) -> str:
    """One entry per function: HTTP ones with methods and URL, others with how to trigger them.

    `event_hubs` maps Event Hub-triggered functions to their resolved event hub name.
    """
    event_hubs = event_hubs or {}
    lines = ["", "Functions:", ""]
    for spec in sorted(functions, key=lambda s: s.name.lower()):
        if spec.http is not None:
            methods = ",".join(sorted(spec.http.methods)) if spec.http.methods else "ALL"
            path = "/".join(p for p in (route_prefix, spec.http.route.strip("/")) if p)
            lines.append(f"\t{spec.name}: [{methods}] {base_url}/{path}")
        elif spec.trigger.type == EVENT_GRID_TRIGGER:
            lines.append(
                f"\t{spec.name}: {spec.trigger.type} "
                f"POST {base_url}/runtime/webhooks/eventgrid?functionName={spec.name}"
            )
        elif spec.name in event_hubs:
            lines.append(
                f"\t{spec.name}: {spec.trigger.type} POST "
                f"{base_url}/admin/devstack/eventhubs/{event_hubs[spec.name]}"
            )
        else:
            lines.append(
                f"\t{spec.name}: {spec.trigger.type} POST {base_url}/admin/functions/{spec.name}"
            )
        lines.append("")
    return "\n".join(lines)
