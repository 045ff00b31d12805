"""HTTP body in, HTTP answer (plus queue messages) out, for the webhook; free of azure.functions."""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocation.contract import MAX_BODY_BYTES, AllocationRequest
from allocation.errors import (
    AllocationDeferred,
    AllocationError,
    AttestationError,
    BodyTooLarge,
    FieldProblem,
    InvalidRequest,
)
from allocation.problem_details import HttpAnswer, problem_answer
from allocation.service import AllocationService
from asset_client import AssetError
from observability import DeviceLog
from resilience.dead_letters import DeadLetter
from resilience.deadline import request_budget
from resilience.durable_queue import QueueError

_logger = logging.getLogger("allocation")


async def answer_allocation(
    body: bytes, *, request_id: str, service: AllocationService, budget_seconds: float = 4.0
) -> HttpAnswer:
    log = DeviceLog(_logger, request_id=request_id)
    request: AllocationRequest | None = None
    try:
        request = parse_request(body)
        log = log.bind(registrationId=request.device_runtime_context.registration_id)
        with request_budget(budget_seconds):
            outcome = await service.allocate(request, log, request_id=request_id)
    except (AllocationError, AssetError, QueueError) as error:
        status_log = log.error if isinstance(error, AssetError) else log.warning
        status_log("allocation refused", reason=type(error).__name__, detail=str(error))
        answer = problem_answer(error, request_id)
        letter = _dead_letter(error, request, request_id)
        return answer if letter is None else answer.with_dead_letter(json.dumps(letter))
    except Exception as error:
        log.error("allocation failed unexpectedly", exc_info=True, reason=type(error).__name__)
        return problem_answer(error, request_id)
    reconciliation = outcome.reconciliation
    return HttpAnswer(
        200,
        outcome.decision.response.to_json(),
        "application/json",
        {"x-request-id": request_id},
        reconciliation=json.dumps(reconciliation.to_message()) if reconciliation else None,
    )


def parse_request(body: bytes) -> AllocationRequest:
    """Size first (DPS never sends more than 96 KB), then JSON and shape in one pass."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body is {len(body)} bytes; DPS sends at most {MAX_BODY_BYTES}")
    try:
        return AllocationRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise InvalidRequest("body is not valid JSON") from exc
        problems = [FieldProblem(_field_name(error), error["msg"]) for error in errors]
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        raise InvalidRequest(f"not a DPS allocation request: {summary}", problems) from exc


def _dead_letter(
    error: Exception, request: AllocationRequest | None, request_id: str
) -> dict[str, object] | None:
    """A registration refused for good is kept with its context. Not for bodies that are no
    DPS request at all, and not for a deferral (DPS retries those)."""
    if request is None or not isinstance(error, AllocationError):
        return None
    if isinstance(error, InvalidRequest | BodyTooLarge | AllocationDeferred):
        return None
    context = request.device_runtime_context
    letter = DeadLetter(
        source="allocation",
        kind="allocation",
        reason=error.code,
        detail=str(error)[:2000],
        registration_id=context.registration_id,
        device_id=request.enrollment.device_id or context.registration_id,
        request_id=request_id,
        request={
            "registrationId": context.registration_id,
            "enrollment": request.enrollment.enrollment_group_id
            or request.enrollment.registration_id,
            "attestation": context.attestation_kind,
            "linkedHubs": list(request.linked_hubs),
            "currentHub": context.current_iot_hub_host_name,
            "payloadKeys": sorted(context.payload or {})[:50],
            "field": error.field if isinstance(error, AttestationError) else None,
        },
        # The device must register again once the cause is fixed; replaying cannot help.
        replayable=False,
    )
    return letter.to_message()


def _field_name(error: ErrorDetails) -> str:
    name = ""
    for part in error["loc"]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"
