"""HTTP body in, HTTP answer out, for the webhook; free of azure.functions.

Parsing and status mapping live here; what a request records (dead letters, reconciliation,
audit) is the service's to decide and send.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocation.contract import MAX_BODY_BYTES, AllocationRequest
from allocation.errors import AllocationError, BodyTooLarge, FieldProblem, InvalidRequest
from allocation.problem_details import HttpAnswer, problem_answer
from allocation.service import AllocationService, Refused
from app_errors import AppError
from observability import DeviceLog
from resilience.deadline import request_budget

_logger = logging.getLogger("allocation")


async def answer_allocation(
    body: bytes, *, request_id: str, service: AllocationService, budget_seconds: float = 4.0
) -> HttpAnswer:
    log = DeviceLog(_logger, request_id=request_id)
    try:
        request = parse_request(body)
        log = log.bind(registrationId=request.device_runtime_context.registration_id)
        with request_budget(budget_seconds):
            outcome = await service.allocate(request, log, request_id=request_id)
    except AllocationError as error:
        log.warning("request refused", reason=error.code, detail=error.detail)
        return problem_answer(error, request_id)
    except AppError as error:  # a dependency's failure: the family decides the status
        log.error(
            "allocation failed; DPS will retry", reason=type(error).__name__, detail=str(error)
        )
        return problem_answer(error, request_id)
    except Exception as error:
        log.error("allocation failed unexpectedly", exc_info=True, reason=type(error).__name__)
        return problem_answer(error, request_id)
    if isinstance(outcome, Refused):
        return problem_answer(outcome.error, request_id)
    return HttpAnswer(
        200,
        outcome.decision.response.to_json(),
        "application/json",
        {"x-request-id": request_id},
    )


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
