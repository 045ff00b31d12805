"""OpenTelemetry is configured only when an exporter is set, and log lines carry trace ids."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from observability import DeviceLog
from observability.telemetry import plan_telemetry
from tests.unit.test_settings_and_startup import GOOD, REPO, SETTING_NAMES

PROBE = """
import json, logging, os, sys
import function_app
from opentelemetry import metrics, trace

def metric_exporters():
    readers = getattr(metrics.get_meter_provider(), "_metric_readers", [])
    return sorted(type(getattr(r, "_exporter", r)).__name__ for r in readers)

def requests_traced():
    if "opentelemetry.instrumentation.requests" not in sys.modules:
        return False
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    return RequestsInstrumentor().is_instrumented_by_opentelemetry

def azure_sdk_traced():
    if "azure.core" not in sys.modules:
        return False
    from azure.core.settings import settings
    return bool(settings.tracing_enabled())

print(json.dumps({
    "metric_exporters": metric_exporters(),
    "requests_traced": requests_traced(),
    "azure_sdk_traced": azure_sdk_traced(),
    "meter_provider": type(metrics.get_meter_provider()).__module__ + "."
    + type(metrics.get_meter_provider()).__name__,
    "provider": type(trace.get_tracer_provider()).__module__ + "."
    + type(trace.get_tracer_provider()).__name__,
    "sdk_loaded": "opentelemetry.sdk" in sys.modules,
    # Cold start: the storage and IoT Hub SDKs (azure-core) load on first use, not at import.
    "azure_core_loaded": "azure.core" in sys.modules,
    "azure_monitor_loaded": "azure.monitor.opentelemetry" in sys.modules,
    "root_log_handlers": sorted(type(h).__name__ for h in logging.getLogger().handlers),
    "logs_exporter": os.environ.get("OTEL_LOGS_EXPORTER"),
}))
"""


def _start_app(**overrides: str) -> dict[str, object]:
    env = {
        k: v for k, v in os.environ.items() if k not in SETTING_NAMES and not k.startswith("OTEL_")
    }
    env.update({**GOOD, **overrides})
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_an_exporter_the_app_starts_on_the_no_op_api_alone():
    started = _start_app()
    assert started == {
        "metric_exporters": [],
        "requests_traced": False,
        "azure_sdk_traced": False,
        "meter_provider": "opentelemetry.metrics._internal._ProxyMeterProvider",
        "provider": "opentelemetry.trace.ProxyTracerProvider",
        "sdk_loaded": False,
        "azure_core_loaded": False,
        "azure_monitor_loaded": False,
        "root_log_handlers": [],
        "logs_exporter": None,
    }


def test_with_an_otlp_endpoint_the_app_starts_sdk_tracer_and_meter_providers():
    # The probe above can fail: the same start with an exporter set has the SDK's provider.
    started = _start_app(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert started == {
        "metric_exporters": ["OTLPMetricExporter"],
        # The IoT Hub SDK's calls (requests) and the storage SDK's operations get spans too.
        "requests_traced": True,
        "azure_sdk_traced": True,
        "meter_provider": "opentelemetry.sdk.metrics._internal.MeterProvider",
        "provider": "opentelemetry.sdk.trace.TracerProvider",
        "sdk_loaded": True,
        "azure_core_loaded": True,
        "azure_monitor_loaded": False,
        "root_log_handlers": [],
        "logs_exporter": None,
    }


def test_with_application_insights_the_distro_sends_traces_and_metrics_but_no_logs():
    # Configuring sends nothing: no span is made, so neither Azure nor a token is asked for.
    started = _start_app(
        APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=00000000-0000-0000-0000-"
        "000000000000;IngestionEndpoint=http://127.0.0.1:9/",
        AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000001",
    )
    # The distro instruments requests and the Azure SDKs itself.
    assert started == {
        "metric_exporters": ["AzureMonitorMetricExporter"],
        "requests_traced": True,
        "azure_sdk_traced": True,
        "meter_provider": "opentelemetry.sdk.metrics._internal.MeterProvider",
        "provider": "opentelemetry.sdk.trace.TracerProvider",
        "sdk_loaded": True,
        "azure_core_loaded": True,
        "azure_monitor_loaded": True,
        "root_log_handlers": [],
        "logs_exporter": "none",
    }


@pytest.mark.parametrize(
    ("otlp", "connection_string", "client_id", "exports", "azure", "identity"),
    [
        (None, None, None, False, None, None),
        ("", "", "", False, None, None),
        ("http://127.0.0.1:4318", None, "cid", True, None, "cid"),
        (None, "InstrumentationKey=00000000-0000-0000-0000-000000000000", None, True, "set", None),
        (
            "http://c:4318",
            "InstrumentationKey=00000000-0000-0000-0000-000000000000",
            "c",
            True,
            "set",
            "c",
        ),
    ],
)
def test_the_plan_follows_the_settings(
    otlp, connection_string, client_id, exports, azure, identity
):
    plan = plan_telemetry(
        otlp_endpoint=otlp,
        applicationinsights_connection_string=connection_string,
        azure_client_id=client_id,
    )
    assert plan.exports is exports
    assert plan.otlp is bool(otlp)
    assert (plan.azure_monitor_connection_string is not None) is (azure == "set")
    assert plan.managed_identity_client_id == identity


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    logger = logging.getLogger("test.telemetry")
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_a_device_log_line_inside_a_span_carries_its_trace_and_span_ids(records):
    logger, seen = records
    # A provider of the test's own: the global one stays the no-op API's.
    tracer = TracerProvider().get_tracer("test")
    log = DeviceLog(logger, request_id="inv-1").bind(registrationId="reg-1", assetId="AST-1")
    with tracer.start_as_current_span("allocate") as span:
        log.info("allocated", hub="hub-a")
    context = span.get_span_context()
    record = seen[-1].__dict__
    assert record["traceId"] == f"{context.trace_id:032x}"
    assert record["spanId"] == f"{context.span_id:016x}"
    assert (record["registrationId"], record["assetId"], record["requestId"], record["hub"]) == (
        "reg-1",
        "AST-1",
        "inv-1",
        "hub-a",
    )


def test_a_device_log_line_outside_any_span_has_no_trace_fields(records):
    logger, seen = records
    DeviceLog(logger, request_id="inv-2").info("refused")
    assert "traceId" not in seen[-1].__dict__
    assert "spanId" not in seen[-1].__dict__
    assert seen[-1].__dict__["requestId"] == "inv-2"


def test_binding_a_device_log_tags_the_current_span_with_its_identifiers(records):
    logger, _ = records
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("sync") as span:
        log = DeviceLog(logger, request_id="inv-3", device_id="dev-1")
        log.bind(assetId="AST-9", registrationId="dev-1", hub="hub-a").bind(assetId=None)
    assert isinstance(span, ReadableSpan)
    assert dict(span.attributes or {}) == {
        "faas.invocation_id": "inv-3",
        "dps.device_id": "dev-1",
        "dps.registration_id": "dev-1",
        "asset.id": "AST-9",  # a later None binding leaves what is known; `hub` is no identifier
    }
