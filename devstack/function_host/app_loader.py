"""Import a v2 FunctionApp and index its functions the way the Python worker does."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.functions import FunctionRegister

from devstack.function_host.errors import StartupError
from devstack.function_host.keys import AuthLevel

logger = logging.getLogger(__name__)

HTTP_TRIGGER = "httpTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
EVENT_HUB_TRIGGER = "eventHubTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
RETRY_POLICY_SETTING = "retry_policy"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"})
_AUTH_LEVELS: dict[str, AuthLevel] = {
    "anonymous": "anonymous",
    "function": "function",
    "admin": "admin",
}


@dataclass(frozen=True)
class Binding:
    """One entry of the function.json the worker would report to the host."""

    name: str
    type: str
    direction: str
    raw: dict[str, Any]

    @property
    def is_output(self) -> bool:
        return self.direction in {"out", "inout"}


@dataclass(frozen=True)
class HttpRoute:
    """Route, methods (None = all) and auth level of an HTTP trigger."""

    route: str
    methods: frozenset[str] | None
    auth_level: AuthLevel


@dataclass(frozen=True)
class FunctionSpec:
    """Everything the host needs to invoke one function."""

    name: str
    trigger: Binding
    bindings: tuple[Binding, ...]
    user_function: Callable[..., Any]
    parameters: frozenset[str]
    annotations: dict[str, Any] = field(default_factory=dict)
    http: HttpRoute | None = None
    # The `@app.retry(...)` setting as azure-functions stores it (strategy, max_retry_count,
    # delay_interval, minimum_interval, maximum_interval), or None.
    retry_policy: dict[str, Any] | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    @property
    def wants_context(self) -> bool:
        return "context" in self.parameters


def import_app(script_root: Path, app_ref: str) -> FunctionRegister:
    """Import `module:attr` with the script root first on sys.path, as the worker does."""
    module_name, _, attr = app_ref.partition(":")
    attr = attr or "app"
    if not module_name:
        raise StartupError(f"--app must look like module:attribute, got {app_ref!r}")
    root = str(script_root)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise StartupError(
            f"failed to import the function app {app_ref!r} from {script_root}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, FunctionRegister):
        raise StartupError(
            f"{module_name}.{attr} must be an azure.functions.FunctionApp, "
            f"found {type(app).__name__}"
        )
    return app


def index_functions(app: FunctionRegister) -> list[FunctionSpec]:
    """Call `get_functions()` once (a second call raises) and describe each function."""
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise StartupError(
            f"indexing the function app failed: {type(exc).__name__}: {exc}"
        ) from exc
    specs: list[FunctionSpec] = []
    for function in functions:
        name = function.get_function_name() or function.get_user_function().__name__
        document = json.loads(function.get_function_json())
        bindings = tuple(_binding(name, raw) for raw in document.get("bindings", []))
        trigger = function.get_trigger()
        if trigger is None:
            raise StartupError(f"function {name!r} has no trigger")
        trigger_binding = next(b for b in bindings if b.name == trigger.name and not b.is_output)
        user_function = function.get_user_function()
        specs.append(
            FunctionSpec(
                name=name,
                trigger=trigger_binding,
                bindings=bindings,
                user_function=user_function,
                parameters=frozenset(inspect.signature(user_function).parameters),
                annotations=_annotations(user_function),
                http=_http_route(name, trigger_binding)
                if trigger_binding.type == HTTP_TRIGGER
                else None,
                retry_policy=function.get_settings_dict(RETRY_POLICY_SETTING),
            )
        )
    return specs


def load_functions(
    script_root: Path, app_ref: str, environ: Mapping[str, str] | None = None
) -> list[FunctionSpec]:
    """Import the app and index it; any failure is a StartupError naming the cause.

    A function disabled with the app setting `AzureWebJobs.<name>.Disabled` (or, where app
    settings cannot hold dots, `AzureWebJobs__<name>__Disabled`) is left out, as on Azure.
    """
    specs = index_functions(import_app(script_root, app_ref))
    enabled = [spec for spec in specs if not _disabled(spec.name, environ or {})]
    for spec in specs:
        if spec not in enabled:
            logger.info("Function '%s' is disabled", spec.name)
    _warn_unsupported(enabled)
    return enabled


def _disabled(name: str, environ: Mapping[str, str]) -> bool:
    wanted = {f"azurewebjobs.{name}.disabled".lower(), f"azurewebjobs__{name}__disabled".lower()}
    return any(
        key.lower() in wanted and value.strip().lower() in ("true", "1")
        for key, value in environ.items()
    )


def _binding(function_name: str, raw: Any) -> Binding:
    if not isinstance(raw, dict) or not {"name", "type", "direction"} <= raw.keys():
        raise StartupError(f"function {function_name!r} has a malformed binding: {raw!r}")
    return Binding(
        name=str(raw["name"]),
        type=str(raw["type"]),
        direction=str(raw["direction"]).lower(),
        raw=raw,
    )


def _http_route(name: str, trigger: Binding) -> HttpRoute:
    methods_raw = trigger.raw.get("methods")
    methods = frozenset(str(m).upper() for m in methods_raw) if methods_raw else None
    if methods is not None and not methods <= HTTP_METHODS:
        raise StartupError(f"function {name!r} lists unknown HTTP methods {sorted(methods)}")
    level = str(trigger.raw.get("authLevel", "function")).lower()
    if level not in _AUTH_LEVELS:
        raise StartupError(f"function {name!r} has unknown authLevel {level!r}")
    route = trigger.raw.get("route") or name
    return HttpRoute(route=str(route), methods=methods, auth_level=_AUTH_LEVELS[level])


def _annotations(user_function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(user_function)
    except Exception:
        return {}


def _warn_unsupported(specs: Sequence[FunctionSpec]) -> None:
    for spec in specs:
        for binding in spec.bindings:
            if binding is not spec.trigger and not binding.is_output:
                logger.warning(
                    "input binding not supported by the dev host; the function gets None",
                    extra={"function": spec.name, "binding": binding.name, "type": binding.type},
                )
