"""The dev host's console log: every logger's lines, its own first warning included, are
written without key material."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from devstack.function_host.logging_setup import LOG_LEVEL_ENV, configure_logging
from observability import RedactionFilter

KEY = "c2VjcmV0LWtleS1ub3QtdG8tYmUtbG9nZ2Vk"
HUB_CONNECTION = f"HostName=hub.azure-devices.net;SharedAccessKeyName=owner;SharedAccessKey={KEY}"


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging on a string; the root logger's handlers and level restored after."""
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


def test_app_sdk_and_host_lines_carry_no_key(console):
    configure_logging(console)
    logging.getLogger("allocation").warning(
        "allocation refused", extra={"registrationId": "sensor-1001", "detail": HUB_CONNECTION}
    )
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info(
        "Request URL: 'https://acct.queue.core.windows.net/q?sv=1&sig=%s'", KEY
    )
    logging.getLogger("devstack.function_host.invocation").error(
        "function failed", extra={"headers": {"x-functions-key": KEY}}
    )
    output = console.getvalue()
    assert KEY not in output
    assert "registrationId=sensor-1001" in output
    assert "SharedAccessKey=***" in output
    assert "&sig=***" in output
    assert 'headers="{\\"x-functions-key\\": \\"***\\"}"' in output


def test_a_traceback_logged_by_the_host_carries_no_key(console):
    configure_logging(console)
    try:
        raise ValueError(f"cannot use {HUB_CONNECTION}")
    except ValueError:
        logging.getLogger("devstack.function_host.invocation").exception("function failed")
    output = console.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "ValueError: cannot use HostName=hub.azure-devices.net" in output
    assert KEY not in output


def test_the_hosts_own_first_warning_is_already_redacted(console, monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, f"AccountKey={KEY}")
    configure_logging(console)
    output = console.getvalue()
    assert "unknown log level" in output
    assert KEY.upper() not in output.upper()


def test_configuring_again_leaves_one_redacting_handler(console):
    configure_logging(console)
    configure_logging(console)
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1
    assert sum(isinstance(f, RedactionFilter) for f in handlers[0].filters) == 1
