"""Dead letters as found on the queue: decoding (never failing), and what replaying one sends.

Pure: no I/O. A message that is not a dead letter (not base64, not JSON, not the model) is
kept as an unreadable letter with the reason, so one bad message never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from messages import DeadLetter, ReconciliationMessage, capped_event
from operator_cli.queue_text import Unreadable, json_object
from resilience.queue_port import QueueEncoding

REPLAYABLE_KINDS = frozenset({"allocation", "twinChange", "assetChange"})
REPLAY_REASON = "replayed from dead letters"
LIST_CONTENT_CHARS = 500
"""How much of an unreadable message's text a listing shows (show prints all of it)."""

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class QueuedLetter:
    """One message of the dead-letter queue: the letter, or why it could not be read."""

    message_id: str
    inserted_on: datetime | None
    text: str
    letter: DeadLetter | None
    problem: str | None = None

    @property
    def when(self) -> datetime:
        """When it was dead-lettered (queued, for an unreadable one), always timezone-aware."""
        moment = self.letter.dead_lettered_at if self.letter else self.inserted_on
        return _aware(moment) if moment else _EPOCH

    @property
    def sort_key(self) -> tuple[datetime, datetime, str]:
        return self.when, _aware(self.inserted_on) if self.inserted_on else _EPOCH, self.message_id


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_letter(
    message_id: str, inserted_on: datetime | None, text: str, encoding: QueueEncoding
) -> QueuedLetter:
    """Decode a message as the app wrote it; any failure becomes an unreadable letter."""

    def unreadable(problem: str) -> QueuedLetter:
        return QueuedLetter(message_id, inserted_on, text, None, problem)

    parsed = json_object(text, encoding)
    if isinstance(parsed, Unreadable):
        return unreadable(parsed.problem)
    try:
        letter = DeadLetter.model_validate(parsed)
    except ValidationError as exc:
        return unreadable(f"not a dead letter: {_summary(exc)}")
    return QueuedLetter(message_id, inserted_on, text, letter)


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def refusal(queued: QueuedLetter) -> str | None:
    """Why this message must not be replayed, or None when it may."""
    letter = queued.letter
    if letter is None:
        return f"it is unreadable ({queued.problem}); fix or delete it by hand"
    if not letter.replayable:
        return (
            f"it is marked not replayable: {letter.reason} "
            "(replaying cannot change a refusal like this one)"
        )
    if letter.kind not in REPLAYABLE_KINDS:
        return f"its kind {letter.kind!r} has no reconciliation handler"
    return None


def replay_message(letter: DeadLetter) -> ReconciliationMessage:
    """The reconciliation queue message that retries this letter's work."""
    return ReconciliationMessage(
        kind=letter.kind,
        reason=REPLAY_REASON,
        detail=letter.reason,
        device_id=letter.device_id,
        asset_id=letter.asset_id,
        hub=letter.hub,
        request_id=letter.request_id,
        event=capped_event(letter.request) if letter.request is not None else None,
        attempts=letter.attempts + 1,
    )


def letter_json(queued: QueuedLetter, *, full: bool) -> dict[str, Any]:
    """A message for --json output: the dead letter as stored, or the problem and the text."""
    item: dict[str, Any] = {
        "id": queued.message_id,
        "insertedOn": queued.inserted_on.isoformat() if queued.inserted_on else None,
        "readable": queued.letter is not None,
    }
    if queued.letter is not None:
        item["deadLetter"] = queued.letter.to_message()
    else:
        item["problem"] = queued.problem
        item["content"] = queued.text if full else queued.text[:LIST_CONTENT_CHARS]
    return item
