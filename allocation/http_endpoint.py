"""HTTP body in, HTTP answer out, for the webhook; free of azure.functions.

Parsing and status mapping live here; what a request records (dead letters, reconciliation,
audit) is the service's to decide and send. Each request is one span, a child of the invocation's
trace context; its attributes say who asked and what was decided.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocation.contract import MAX_BODY_BYTES, AllocationRequest
from allocation.errors import AllocationError, BodyTooLarge, FieldProblem, InvalidRequest
from allocation.problem_details import HttpAnswer, problem_answer
from allocation.service import AllocationOutcome, AllocationService, Refused
from app_errors import AppError
from observability import DeviceLog
from observability import trace_attributes as attr
from observability.allocation_metrics import AllocationMetrics, global_allocation_metrics
from observability.flow_spans import TraceContext, flow_span, mark_failed
from resilience.deadline import request_budget

_logger = logging.getLogger("allocation")
_tracer = trace.get_tracer("allocation")
_metrics = global_allocation_metrics()


async def answer_allocation(
    body: bytes,
    *,
    request_id: str,
    service: AllocationService,
    budget_seconds: float = 4.0,
    parent: TraceContext | None = None,
    tracer: Tracer | None = None,
    metrics: AllocationMetrics | None = None,
) -> HttpAnswer:
    """`parent`: the invocation's W3C trace context, the span's parent.
    `tracer` and `metrics`: the global providers' unless given."""
    started = time.perf_counter()
    decided: dict[str, str] = {}
    with flow_span(
        tracer or _tracer,
        attr.ALLOCATION_SPAN,
        kind=trace.SpanKind.SERVER,
        request_id=request_id,
        parent=parent,
    ) as span:
        log = DeviceLog(_logger, request_id=request_id)
        try:
            request = parse_request(body)
            registration_id = request.device_runtime_context.registration_id
            span.set_attribute(attr.REGISTRATION_ID, registration_id)
            log = log.bind(registrationId=registration_id)
            with request_budget(budget_seconds):
                outcome = await service.allocate(request, log, request_id=request_id)
        except AllocationError as error:
            log.warning("request refused", reason=error.code, detail=error.detail)
            decided = _refusal(error)
            return problem_answer(error, request_id)
        except AppError as error:  # a dependency's failure: the family decides the status
            log.error(
                "allocation failed; DPS will retry", reason=type(error).__name__, detail=str(error)
            )
            decided = _failure(span, error)
            return problem_answer(error, request_id)
        except Exception as error:
            log.error("allocation failed unexpectedly", exc_info=True, reason=type(error).__name__)
            decided = _failure(span, error)
            return problem_answer(error, request_id)
        else:
            decided = _outcome(outcome)
        finally:
            # The one place an answered request is recorded: the span's outcome attributes,
            # and the same (bounded) ones on the metrics. Nothing when the request was
            # cancelled before an answer.
            if decided:
                span.set_attributes(decided)
                (metrics or _metrics).record(decided, time.perf_counter() - started)
    if isinstance(outcome, Refused):
        return problem_answer(outcome.error, request_id)
    return HttpAnswer(
        200,
        outcome.decision.response.to_json(),
        "application/json",
        {"x-request-id": request_id},
    )


def _outcome(outcome: AllocationOutcome) -> dict[str, str]:
    if isinstance(outcome, Refused):
        return _refusal(outcome.error)
    decision = outcome.decision
    decided = {
        attr.OUTCOME: "fallback" if outcome.fallback_reason is not None else "allocated",
        attr.HUB: decision.hub.hub,
        attr.HUB_SELECTION: decision.hub.selection.value,
        attr.ROLE: decision.role.role.value,
        attr.ROLE_REASON: decision.role.reason,
    }
    if outcome.fallback_reason is not None:
        decided[attr.REASON] = outcome.fallback_reason
    return decided


def _refusal(error: AllocationError) -> dict[str, str]:
    return {attr.OUTCOME: "refused", attr.REASON: error.code}


def _failure(span: Span, error: Exception) -> dict[str, str]:
    mark_failed(span, error)
    return {attr.OUTCOME: "failed", attr.REASON: type(error).__name__}


def parse_request(body: bytes) -> AllocationRequest:
    """Size first (DPS never sends more than 96 KB), then JSON and shape in one pass."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(
            f"body is {len(body)} bytes; DPS sends at most {MAX_BODY_BYTES}",
            public=f"the body is larger than DPS ever sends ({MAX_BODY_BYTES} bytes)",
        )
    try:
        return AllocationRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise InvalidRequest("body is not valid JSON") from exc
        problems = [FieldProblem(_field_name(error), error["msg"]) for error in errors[:20]]
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        raise InvalidRequest(f"not a DPS allocation request: {summary}", problems) from exc


def _field_name(error: ErrorDetails) -> str:
    name = ""
    for part in error["loc"][:12]:
        text = str(part)[:64]
        name += f"[{text}]" if isinstance(part, int) else (f".{text}" if name else text)
    return name or "body"
