"""OpenTelemetry for the worker, configured once at start-up from its settings.

Traces and metrics over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, to Application Insights
(through the Azure Monitor distro, authenticated with the managed identity) when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, both when both are.
With neither, nothing is configured: the API's no-op tracer and meter serve every span and
instrument, and neither the SDK nor an exporter is imported.

Either way the outgoing HTTP calls get a client span each and send its `traceparent`: the asset
API and the storage queues (aiohttp), the IoT Hub SDK's (requests); the storage SDK's operations
get spans of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVICE_NAME = "dps-asset-onboarding"


@dataclass(frozen=True)
class TelemetryPlan:
    """Where spans go; `configure` builds exactly this."""

    otlp: bool
    azure_monitor_connection_string: str | None
    managed_identity_client_id: str | None

    @property
    def exports(self) -> bool:
        return self.otlp or self.azure_monitor_connection_string is not None


def plan_telemetry(
    *,
    otlp_endpoint: str | None,
    applicationinsights_connection_string: str | None,
    azure_client_id: str | None,
) -> TelemetryPlan:
    return TelemetryPlan(
        otlp=bool(otlp_endpoint),
        azure_monitor_connection_string=applicationinsights_connection_string or None,
        managed_identity_client_id=azure_client_id or None,
    )


_configured: TelemetryPlan | None = None


def configure(plan: TelemetryPlan) -> bool:
    """Set the global tracer and meter providers per `plan`, once per process; True if it
    exports."""
    global _configured
    if _configured is not None or not plan.exports:
        return _configured is not None and _configured.exports
    if plan.azure_monitor_connection_string is not None:
        # The distro also turns on the Azure SDKs' own spans and the requests instrumentation.
        _configure_azure_monitor(plan, plan.azure_monitor_connection_string)
    else:
        _configure_otlp()
        _configure_otlp_metrics()
        _trace_azure_sdks()
    # After the providers: an instrumentor takes its tracer from the global provider.
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    AioHttpClientInstrumentor().instrument()
    _configured = plan
    return True


def _trace_azure_sdks() -> None:
    """Spans of the Azure SDKs' own: the storage clients' operations (azure-core's native
    OpenTelemetry tracing) and the IoT Hub SDK's HTTP calls, which go through requests."""
    from azure.core.settings import settings
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    settings.tracing_enabled = True
    RequestsInstrumentor().instrument()


def _resource() -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over the default name.
    return Resource.create({"service.name": SERVICE_NAME}).merge(OTELResourceDetector().detect())


def _otlp_span_processor() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # No arguments: the exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (adding /v1/traces), and
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _HEADERS and _TIMEOUT, as every OTLP exporter does.
    return BatchSpanProcessor(OTLPSpanExporter())


def _sampler() -> Any:
    """Every allocation, unless OTEL_TRACES_SAMPLER chooses otherwise.

    The remote parent is the Functions host's invocation context: its sampled flag is the host's
    own telemetry choice (the dev host starts unsampled ones), not a caller's, and would drop
    the traces of every device DPS sends without a `traceparent`. A sampled parent is kept.
    """
    import os

    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK reads it and its argument
    return ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def _configure_otlp() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=_resource(), sampler=_sampler())
    provider.add_span_processor(_otlp_span_processor())
    trace.set_tracer_provider(provider)


def _otlp_metric_reader() -> Any:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    # No arguments: the exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (adding /v1/metrics) and the
    # _METRICS_ variants; the reader reads OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
    return PeriodicExportingMetricReader(OTLPMetricExporter())


def _configure_otlp_metrics() -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(resource=_resource(), metric_readers=[_otlp_metric_reader()])
    metrics.set_meter_provider(provider)


def _configure_azure_monitor(plan: TelemetryPlan, connection_string: str) -> None:
    import os

    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    # Traces and metrics; no logs. The host already sends the worker's log lines to Application
    # Insights (the worker pipes them while neither PYTHON_ENABLE_OPENTELEMETRY nor
    # PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is set), so the distro's log export would
    # send each line twice. The distro (1.8) takes this switch from the environment only,
    # ignoring its disable_logging argument; an explicit setting wins.
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")

    # An explicit credential: the exporter then never falls back to the instrumentation key,
    # and Application Insights with local authentication disabled accepts the telemetry.
    configure_azure_monitor(
        connection_string=connection_string,
        credential=ManagedIdentityCredential(client_id=plan.managed_identity_client_id),
        resource=_resource(),
        span_processors=[_otlp_span_processor()] if plan.otlp else [],
        metric_readers=[_otlp_metric_reader()] if plan.otlp else [],
    )
