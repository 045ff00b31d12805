"""Queue messages that always fit: a message too large for Azure Storage loses its bulk, never
its identifiers, reason or detail. And the one thing the recorders need of a queue."""

from __future__ import annotations

import json
from typing import Any, Protocol

MAX_MESSAGE_JSON_BYTES = 45_000
"""A message's compact UTF-8 JSON: 60,000 bytes once base64-encoded, under the 64 KiB limit."""
_HEAD_CHARS = 1000


def fitted(message: dict[str, Any], bulky: str) -> dict[str, Any]:
    """The message, with its `bulky` member cut to a marker if the whole would not fit a queue
    message; identifiers, reason and detail always survive."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text.encode()) <= MAX_MESSAGE_JSON_BYTES or message.get(bulky) is None:
        return message
    cut = json.dumps(message[bulky], separators=(",", ":"), ensure_ascii=False, default=str)
    return {**message, bulky: {"truncated": True, "chars": len(cut), "head": cut[:_HEAD_CHARS]}}


class QueueSender(Protocol):
    async def send(self, message: dict[str, Any]) -> None: ...
