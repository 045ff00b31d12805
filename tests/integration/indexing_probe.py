"""Index the function app as Azure's Python worker does, or as the dev functions host does, and
print what the host would learn, as JSON:

    python -m tests.integration.indexing_probe worker    # azure-functions-runtime (Python 3.13+)
    python -m tests.integration.indexing_probe devhost   # devstack/function_host/app_loader.py

Each runs in a process of its own with the app's settings in its environment: the app registers
its functions once per import, and its get_functions() may be called only once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
APP = "function_app:app"
# Enum values of FunctionRpc.proto (BindingInfo.Direction, BindingInfo.DataType).
DIRECTIONS = {0: "in", 1: "out", 2: "inout"}
DATA_TYPES = {0: "undefined", 1: "string", 2: "binary", 3: "stream"}
SUCCESS = 1  # StatusResult.Status.Success
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class _MessageType:
    """One message type of the host protocol: calling it records the fields the worker sets."""

    def __init__(self, name: str, **enum_values: int) -> None:
        self.name = name
        for key, value in enum_values.items():
            setattr(self, key, value)

    def __call__(self, **fields: Any) -> SimpleNamespace:
        return SimpleNamespace(message=self.name, **fields)


class RecordingProtos:
    """Stands in for the generated FunctionRpc protos the host's proxy worker hands the library
    worker (they ship with the host, not on PyPI): every message keeps the fields as the worker
    set them, which is what protobuf would serialise to the host."""

    BindingInfo = _MessageType(
        "BindingInfo",
        **{"in": 0, "out": 1, "inout": 2, "undefined": 0, "string": 1, "binary": 2, "stream": 3},
    )
    StatusResult = _MessageType("StatusResult", Failure=0, Success=SUCCESS, Cancelled=2)

    def __getattr__(self, name: str) -> _MessageType:
        return _MessageType(name)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def worker_report() -> dict[str, Any]:
    """WorkerInitRequest (the worker indexes the app then), then FunctionsMetadataRequest, as the
    host sends them; the metadata it answers and how it loaded each function."""
    import azure.functions
    import azure_functions_runtime as runtime
    from azure_functions_runtime import handle_event
    from azure_functions_runtime.bindings.meta import is_trigger_binding
    from azure_functions_runtime.version import VERSION

    protos = RecordingProtos()
    init_request = SimpleNamespace(
        properties={"host": "127.0.0.1", "protos": protos},
        request=SimpleNamespace(
            worker_init_request=SimpleNamespace(capabilities={}, function_app_directory=str(REPO))
        ),
    )
    metadata_request = SimpleNamespace(
        properties={"protos": protos},
        request=SimpleNamespace(
            functions_metadata_request=SimpleNamespace(function_app_directory=str(REPO))
        ),
    )

    async def exchange() -> tuple[Any, Any]:
        started = await runtime.worker_init_request(init_request)
        listed = await runtime.functions_metadata_request(metadata_request)
        return started, listed

    started, listed = asyncio.run(exchange())
    if started.result.status != SUCCESS:
        exception = started.result.exception
        raise SystemExit(f"the worker failed to index the app: {exception.message}")
    functions = []
    for metadata in listed.function_metadata_results or []:
        info = handle_event._functions.get_function(metadata.function_id)
        bindings = {
            name: {
                "type": binding.type,
                "direction": DIRECTIONS[binding.direction],
                "data_type": DATA_TYPES[binding.data_type or 0],
            }
            for name, binding in metadata.bindings.items()
        }
        functions.append(
            {
                "name": metadata.name,
                "entry_point": metadata.entry_point,
                "script_file": metadata.script_file,
                "directory": metadata.directory,
                "language": metadata.language,
                "properties": metadata.properties,
                "bindings": bindings,
                "triggers": [n for n, b in bindings.items() if is_trigger_binding(b["type"])],
                "raw_bindings": [json.loads(raw) for raw in metadata.raw_bindings],
                "retry": _worker_retry(metadata.retry_options),
                "loaded": {
                    "is_async": info.is_async,
                    "requires_context": info.requires_context,
                    "is_http_func": info.is_http_func,
                    "inputs": {n: t.binding_name for n, t in info.input_types.items()},
                    "outputs": {n: t.binding_name for n, t in info.output_types.items()},
                    "return": info.return_type.binding_name if info.return_type else None,
                },
            }
        )
    return {
        "worker": VERSION,
        "azure_functions": azure.functions.__version__,
        "python": PYTHON,
        "functions": functions,
    }


def _worker_retry(options: Any) -> dict[str, Any] | None:
    if options is None:
        return None
    retry = {"strategy": options.retry_strategy, "max_retry_count": options.max_retry_count}
    if options.retry_strategy == "fixed_delay":
        retry["delay_interval"] = _seconds(options.delay_interval)
    else:
        retry["minimum_interval"] = _seconds(options.minimum_interval)
        retry["maximum_interval"] = _seconds(options.maximum_interval)
    return retry


def devhost_report() -> dict[str, Any]:
    """What the dev host reads when it starts (cli.build_host: load_functions, then the retry
    policy of each Event Hub listener), and how it resolves `%SETTING%` references."""
    import azure.functions

    from devstack.function_host.app_loader import load_functions
    from devstack.function_host.app_settings import resolve_setting_references
    from devstack.function_host.retry_policy import parse_retry_policy

    functions = []
    for spec in load_functions(REPO, APP, os.environ):
        policy = parse_retry_policy(spec.name, spec.retry_policy)
        retry: dict[str, Any] | None = None
        if policy is not None:
            fields = asdict(policy)
            kept = (
                ("delay_interval",)
                if policy.strategy == "fixed_delay"
                else ("minimum_interval", "maximum_interval")
            )
            retry = {"strategy": policy.strategy, "max_retry_count": policy.max_retry_count}
            retry |= {key: fields[key] for key in kept}
        functions.append(
            {
                "name": spec.name,
                "trigger": spec.trigger.name,
                "bindings": {
                    b.name: {"type": b.type, "direction": b.direction} for b in spec.bindings
                },
                "raw_bindings": [b.raw for b in spec.bindings],
                "retry": retry,
                "is_async": spec.is_async,
                "wants_context": spec.wants_context,
                "parameters": sorted(spec.parameters),
                "http": None
                if spec.http is None
                else {
                    "route": spec.http.route,
                    "methods": sorted(spec.http.methods or ()),
                    "auth_level": spec.http.auth_level,
                },
                "resolved": {
                    f"{b.name}.{key}": resolve_setting_references(value, os.environ)
                    for b in spec.bindings
                    for key, value in b.raw.items()
                    if isinstance(value, str) and "%" in value
                },
            }
        )
    return {
        "azure_functions": azure.functions.__version__,
        "python": PYTHON,
        "functions": functions,
    }


def main(argv: list[str]) -> int:
    reports = {"worker": worker_report, "devhost": devhost_report}
    if len(argv) != 1 or argv[0] not in reports:
        print(f"usage: python -m tests.integration.indexing_probe {'|'.join(reports)}")
        return 2
    # The host runs the worker in the app's folder with that folder importable.
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    report = reports[argv[0]]()
    sys.stdout.flush()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
