"""Which functions listen on which event hub: each eventHubTrigger resolved against the app
settings (`%setting%` names, the connection, consumer group, cardinality and retry policy)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.functions.eventhub import EventHubTriggerConverter

from devstack.function_host.app_loader import EVENT_HUB_TRIGGER, FunctionSpec
from devstack.function_host.app_settings import UnresolvedSetting, resolve_setting_references
from devstack.function_host.retry_policy import RetryPolicy, parse_retry_policy
from devstack.function_host.trigger_annotations import annotation_problem, uses_generic_binding

logger = logging.getLogger("devstack.function_host.eventhubs")

DEFAULT_CONSUMER_GROUP = "$Default"
PARTITION_ID = "0"
DEFAULT_NAMESPACE = "localhost"
_ENDPOINT = re.compile(r"(?:^|;)\s*Endpoint\s*=\s*sb://([^/;]+)", re.IGNORECASE)


# --- app settings -------------------------------------------------------------------------------


def _setting_names(connection: str) -> Iterator[str]:
    yield connection
    yield f"AzureWebJobs{connection}"
    yield f"ConnectionStrings__{connection}"


def connection_setting(connection: str, environ: Mapping[str, str]) -> str | None:
    """The app setting a trigger `connection` resolves to, as the WebJobs SDK looks it up.

    A connection string under the name itself, AzureWebJobs<name> or ConnectionStrings:<name>,
    or an identity-based section such as <name>__fullyQualifiedNamespace. None if missing.
    """
    lowered = {key.lower(): key for key, value in environ.items() if value}
    for candidate in _setting_names(connection):
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    prefix = f"{connection}__".lower()
    return next((key for low, key in sorted(lowered.items()) if low.startswith(prefix)), None)


def _namespace(connection: str, environ: Mapping[str, str]) -> str:
    """The Event Hubs namespace named by the connection setting, for PartitionContext."""
    lowered = {key.lower(): value for key, value in environ.items()}
    qualified = lowered.get(f"{connection}__fullyqualifiednamespace".lower())
    if qualified:
        return qualified
    for candidate in _setting_names(connection):
        match = _ENDPOINT.search(lowered.get(candidate.lower(), ""))
        if match:
            return match.group(1)
    return DEFAULT_NAMESPACE


# --- listeners ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventHubListener:
    """An Event Hub-triggered function with its binding resolved against the app settings."""

    spec: FunctionSpec
    event_hub_name: str
    many: bool
    binary: bool
    consumer_group: str
    namespace: str
    retry: RetryPolicy | None = None
    # The trigger parameter is annotated str or bytes: the worker's "generic" binding.
    generic: bool = False
    # Why the worker would refuse to load the function (it then fails every invocation).
    load_error: str | None = None

    @property
    def partition_context(self) -> dict[str, Any]:
        return {
            "FullyQualifiedNamespace": self.namespace,
            "EventHubName": self.event_hub_name,
            "ConsumerGroup": self.consumer_group,
            "PartitionId": PARTITION_ID,
        }


def _listener(spec: FunctionSpec, environ: Mapping[str, str]) -> EventHubListener | None:
    raw = spec.trigger.raw
    fields = {"function": spec.name}
    try:
        hub = resolve_setting_references(str(raw.get("eventHubName") or ""), environ)
        group = resolve_setting_references(
            str(raw.get("consumerGroup") or DEFAULT_CONSUMER_GROUP), environ
        )
    except UnresolvedSetting as exc:
        logger.error(
            "Error indexing method 'Functions.%s': %s; the function gets no events",
            spec.name,
            exc,
            extra=fields,
        )
        return None
    if not hub:
        logger.error(
            "eventHubTrigger without eventHubName; the function gets no events", extra=fields
        )
        return None
    connection = str(raw.get("connection") or "")
    if not connection or connection_setting(connection, environ) is None:
        logger.warning(
            "Event Hub trigger connection %r names no app setting: Core Tools and Azure fail "
            "to start this listener (define %s, or %s__fullyQualifiedNamespace, in "
            "local.settings.json Values); the dev host delivers anyway",
            connection,
            connection or "<connection>",
            connection or "<connection>",
            extra=fields,
        )
    problem = annotation_problem(spec, EventHubTriggerConverter)
    if problem is not None:
        logger.error(
            "the Python worker cannot load this function (%s); in Azure indexing the app "
            "fails, here every Event Hub invocation of it fails",
            problem,
            extra=fields,
        )
    listener = EventHubListener(
        spec=spec,
        event_hub_name=hub,
        many=str(raw.get("cardinality", "one")).lower() == "many",
        binary=str(raw.get("dataType", "")).lower() == "binary",
        consumer_group=group,
        namespace=_namespace(connection, environ) if connection else DEFAULT_NAMESPACE,
        retry=parse_retry_policy(spec.name, spec.retry_policy),
        generic=problem is None and uses_generic_binding(spec),
        load_error=problem,
    )
    if listener.retry is not None and listener.retry.max_retry_count < 0:
        logger.warning(
            "retry policy max_retry_count -1 retries a failing batch forever; the sender's "
            "request waits until the function succeeds",
            extra=fields,
        )
    return listener


def build_listeners(
    functions: Sequence[FunctionSpec], environ: Mapping[str, str]
) -> list[EventHubListener]:
    """Resolve every eventHubTrigger function; problems are logged, never fatal here."""
    listeners = []
    for spec in functions:
        if spec.trigger.type != EVENT_HUB_TRIGGER:
            continue
        listener = _listener(spec, environ)
        if listener is not None:
            listeners.append(listener)
    return listeners
