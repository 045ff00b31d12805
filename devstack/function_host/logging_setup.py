"""Console logging for the dev host and the app: one line per record, structured fields appended."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

from observability import install_redaction

LOG_LEVEL_ENV = "DEVSTACK_LOG_LEVEL"

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c.isspace() or c in '="' for c in text):
        return json.dumps(text)
    return text


class ConsoleFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, then the traceback if any."""

    def __init__(self) -> None:
        super().__init__(
            fmt="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={_format_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        ]
        if not fields:
            return line
        head, newline, tail = line.partition("\n")
        return f"{head} {' '.join(fields)}{newline}{tail}"


def configure_logging(stream: TextIO | None = None) -> None:
    """Configure the root logger at INFO (DEVSTACK_LOG_LEVEL overrides) with ConsoleFormatter;
    key material is redacted from every line (observability.redaction)."""
    requested = os.environ.get(LOG_LEVEL_ENV, "INFO").strip().upper()
    level = logging.getLevelNamesMapping().get(requested)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    # Before the first line: the warning below quotes an environment value.
    install_redaction()
    root.setLevel(level if level is not None else logging.INFO)
    if level is None:
        logging.getLogger(__name__).warning(
            "unknown log level, using INFO", extra={"variable": LOG_LEVEL_ENV, "value": requested}
        )
