"""Dead-lettering a reconciliation message, with what it carried and why it was given up."""

from __future__ import annotations

from messages import DeadLetter, ReconciliationMessage
from messages.emission import Emission
from resilience.outbox import Outbox


class Burial:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def __call__(
        self,
        message: ReconciliationMessage,
        reason: str,
        attempts: int,
        replayable: bool,
        source: str = "reconciliation",
    ) -> None:
        letter = message.given_up(
            source="poison" if source == "poison" else "reconciliation",
            reason=reason,
            attempts=attempts,
            replayable=replayable,
        )
        await self._outbox.send(Emission.of_dead_letter(letter))


def unreadable_letter(body: bytes, error: str, attempts: int, request_id: str) -> DeadLetter:
    """A message nobody can read, kept as received (its head) with why it could not be read."""
    return DeadLetter(
        source="reconciliation",
        kind="allocation",
        reason="unreadable reconciliation message",
        detail=error[:2000],
        request_id=request_id,
        request={"raw": body[:4000].decode("utf-8", "replace")},
        attempts=attempts,
        replayable=False,
    )
