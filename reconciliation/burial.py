"""Dead-lettering a reconciliation message, with what it carried and why it was given up."""

from __future__ import annotations

from messages import DeadLetter, ReconciliationMessage
from resilience.recorders import DeadLetterRecorder


class Burial:
    def __init__(self, recorder: DeadLetterRecorder) -> None:
        self._recorder = recorder

    async def __call__(
        self,
        message: ReconciliationMessage,
        reason: str,
        attempts: int,
        replayable: bool,
        source: str = "reconciliation",
    ) -> None:
        await self._recorder.record(
            DeadLetter(
                source="poison" if source == "poison" else "reconciliation",
                kind=message.kind,
                reason=reason[:200],
                detail=message.detail,
                registration_id=(message.event or {}).get("registrationId"),
                device_id=message.device_id,
                asset_id=message.asset_id,
                hub=message.hub,
                request_id=message.request_id,
                request=message.event,
                attempts=max(attempts, message.attempts),
                first_seen=message.recorded_at,
                replayable=replayable,
            )
        )
