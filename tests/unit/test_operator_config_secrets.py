"""The operator CLI's configuration errors name what is wrong but never print a key, wherever the
connection string came from or was mistakenly given."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operator_cli import config
from operator_cli.errors import ConfigurationError

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFMWzr3ivmjZQ3f/Ia1w=="
STORAGE = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}"
SAS_STORAGE = (
    f"QueueEndpoint=https://acct.queue.core.windows.net/;SharedAccessSignature=sv=1&sig={KEY}"
)


def _shows_key(text: str) -> bool:
    return any(KEY[i : i + 10] in text for i in range(0, len(KEY) - 10, 10))


@pytest.mark.parametrize("value", [STORAGE, SAS_STORAGE, f"AccountKey={KEY}"])
@pytest.mark.parametrize(
    "check",
    [
        lambda value: config.queue_name(value, "the queue"),
        lambda value: config.table_name(value, "the table"),
        lambda value: config.queue_from(
            None, {"DEAD_LETTER_QUEUE": value}, "DEAD_LETTER_QUEUE", "x"
        ),
        lambda value: config.table_from(None, {"AUDIT_TABLE": value}),
        lambda value: config.message_encoding({"QUEUE_MESSAGE_ENCODING": value}),
    ],
)
def test_a_connection_string_given_as_another_setting_is_refused_without_its_key(check, value):
    with pytest.raises(ConfigurationError) as caught:
        check(value)
    assert not _shows_key(str(caught.value))


def test_the_refusal_still_shows_the_harmless_part():
    with pytest.raises(ConfigurationError, match="DefaultEndpointsProtocol=https") as caught:
        config.queue_from(None, {"DEAD_LETTER_QUEUE": STORAGE}, "DEAD_LETTER_QUEUE", "x")
    assert "DEAD_LETTER_QUEUE" in str(caught.value)


@given(before=st.text(max_size=30), after=st.text(max_size=30))
def test_no_queue_or_table_refusal_prints_the_key(before, after):
    value = f"{before} {STORAGE} {after}"
    for check in (config.queue_name, config.table_name):
        refusal = _refusal(check, value)
        assert refusal is not None, "a connection string is no queue or table name"
        assert not _shows_key(str(refusal))


def _refusal(check: Callable[[str, str], str], value: str) -> ConfigurationError | None:
    try:
        check(value, "the flag")
    except ConfigurationError as error:
        return error
    return None


def test_a_connection_string_is_never_in_the_repr(tmp_path: Path):
    connection = config.resolve_connection(STORAGE, {}, tmp_path)
    assert connection.source == config.CONNECTION_FLAG
    assert not _shows_key(repr(connection) + str(connection))


@pytest.mark.parametrize(
    "content",
    [
        f'{{"storage": {{"connectionString": "{STORAGE}"',
        f'{{"storage": {{"connectionString": ["{STORAGE}"]}}}}',
        f'{{"storage": "{STORAGE}"}}',
        f'["{STORAGE}"]',
    ],
)
def test_a_broken_stack_file_is_named_without_its_key(tmp_path: Path, content: str):
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "stack.json").write_text(content)
    with pytest.raises(ConfigurationError, match=r"stack\.json") as caught:
        config.resolve_connection(None, {}, tmp_path)
    assert not _shows_key(str(caught.value))
    assert caught.value.__cause__ is None


def test_the_stack_file_supplies_the_connection_when_nothing_else_does(tmp_path: Path):
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "stack.json").write_text(
        json.dumps({"storage": {"connectionString": STORAGE}})
    )
    connection = config.resolve_connection(None, {}, tmp_path)
    assert connection.account.connection_string == STORAGE
    assert connection.source == str(config.STACK_FILE)
