"""Replaying dead letters: queue their work for reconciliation again, then remove them.

In that order: a crash in between leaves the letter listed while its work is queued, so the
work may run twice (reconciliation is idempotent) but is never lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from operator_cli.dead_letter_store import REPLAY_VISIBILITY_SECONDS, DeadLetterQueue, HeldMessages
from operator_cli.errors import QueueServiceError
from operator_cli.letters import QueuedLetter, refusal, replay_message
from resilience.queue_port import QueueError, QueueUnavailable

ReplayStatus = Literal["replayed", "refused", "failed", "duplicated", "missing", "skipped"]


@dataclass(frozen=True)
class ReplayOutcome:
    message_id: str
    status: ReplayStatus
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "replayed"


class MessageSender(Protocol):
    """The reconciliation queue (resilience.StorageQueue)."""

    async def send(self, message: Mapping[str, Any]) -> None: ...


async def replay(
    queue: DeadLetterQueue, reconciliation: MessageSender, message_ids: Collection[str]
) -> list[ReplayOutcome]:
    """Replay the letters with these ids, in queue order; stop at the first failed send."""
    wanted = set(message_ids)
    outcomes: dict[str, ReplayOutcome] = {}
    held = queue.hold(REPLAY_VISIBILITY_SECONDS)
    async with held, contextlib.aclosing(held.pages()) as pages:
        async for page in pages:
            for queued in page:
                if queued.message_id in wanted:
                    outcome = await _replay_one(queued, held, reconciliation)
                    outcomes[queued.message_id] = outcome
                    if outcome.status == "failed":
                        return _with_rest(outcomes, wanted, _skipped)
            if len(outcomes) == len(wanted):
                break
    return _with_rest(outcomes, wanted, _missing)


async def _replay_one(
    queued: QueuedLetter, held: HeldMessages, reconciliation: MessageSender
) -> ReplayOutcome:
    refused = refusal(queued)
    if refused is not None or queued.letter is None:
        return ReplayOutcome(queued.message_id, "refused", f"not replayed: {refused}")
    message = replay_message(queued.letter)
    try:
        await reconciliation.send(message.to_message())
    except QueueError as exc:
        landed = (
            " It may have landed all the same: replaying again could queue the work twice."
            if isinstance(exc, QueueUnavailable)
            else ""
        )
        return ReplayOutcome(
            queued.message_id, "failed", f"{exc}; the dead letter was kept.{landed}"
        )
    try:
        await held.delete(queued.message_id)
    except QueueServiceError as exc:
        return ReplayOutcome(
            queued.message_id,
            "duplicated",
            f"queued for reconciliation, but the dead letter could not be removed ({exc}): "
            "it is still listed, and replaying it again would queue the work twice",
        )
    return ReplayOutcome(
        queued.message_id,
        "replayed",
        f"{message.kind} queued for reconciliation (attempt {message.attempts})",
    )


def _missing(message_id: str) -> ReplayOutcome:
    return ReplayOutcome(message_id, "missing", "no such message in the dead-letter queue")


def _skipped(message_id: str) -> ReplayOutcome:
    return ReplayOutcome(message_id, "skipped", "not attempted after the failure above")


def _with_rest(
    outcomes: dict[str, ReplayOutcome],
    wanted: set[str],
    rest: Callable[[str], ReplayOutcome],
) -> list[ReplayOutcome]:
    done = list(outcomes.values())
    return done + [rest(message_id) for message_id in sorted(wanted - outcomes.keys())]
