"""A JSON object from a request body or an admin input, or an error that says what is wrong."""

from __future__ import annotations

import json
from typing import Any


def json_object(
    text: str | bytes, error: type[Exception], *, not_json: str, not_object: str
) -> dict[str, Any]:
    """Parse `text` as a JSON object; `error(f"{not_json}: <reason>")` or `error(not_object)`."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise error(f"{not_json}: {exc}") from exc
    if not isinstance(value, dict):
        raise error(not_object)
    return value
