"""Key material never survives redaction, in plain text or in a log record, and ordinary text is
left alone."""

from __future__ import annotations

import io
import json
import logging
import string
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from observability import DeviceLog, RedactionFilter, install_redaction, redact
from observability.redaction import MARKER

SECRET = "Zm9vYmFyYmF6cXV4+/K3y=="

# Every shape a secret is written in, as (template, key name that must remain).
SHAPES = [
    (
        "HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        "SharedAccessKey=",
    ),
    (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;"
        "SharedAccessKey={};EntityPath=twins",
        "SharedAccessKey=",
    ),
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};"
        "EndpointSuffix=core.windows.net",
        "AccountKey=",
    ),
    ("https://acct.queue.core.windows.net/q?sv=2021-08-06&se=2030-01-01&sig={}", "&sig="),
    ("https://acct.queue.core.windows.net/q?sig={}&sv=2021-08-06", "?sig="),
    (
        "SharedAccessSignature sr=hub.azure-devices.net&sig={}&se=1700000000&skn=owner",
        "SharedAccessSignature",
    ),
    (
        "Authorization: SharedAccessSignature sr=hub.azure-devices.net&sig={}&se=17",
        "Authorization: SharedAccessSignature",
    ),
    ("QueueEndpoint=https://acct.queue/;SharedAccessSignature={}", "SharedAccessSignature="),
    ("x-api-key: {}", "x-api-key: "),
    ("{{'x-api-key': '{}', 'accept': 'application/json'}}", "'x-api-key': '"),
    ('{{"x-api-key": "{}", "accept": "application/json"}}', '"x-api-key": "'),
    ("[('x-api-key', '{}')]", "'x-api-key', '"),
    ("x-functions-key: {}", "x-functions-key: "),
    ("Bearer {}", "Bearer "),
    ("Authorization: Bearer {}", "Authorization: Bearer "),
    ("{{'Authorization': 'Bearer {}'}}", "'Authorization': 'Bearer "),
    ("authorization: {}", "authorization: "),
    ("Authorization: Basic {}", "Authorization: Basic "),
    ("{{'Authorization': 'Basic {}'}}", "'Authorization': 'Basic "),
    ('{{"Proxy-Authorization": "{}"}}', '"Proxy-Authorization": "'),
    ("[('authorization', 'NTLM {}')]", "'authorization', 'NTLM "),
    ("https://func.azurewebsites.net/api/allocate?code={}", "?code="),
    ("https://func.azurewebsites.net/api/allocate?x=1&code={}&y=2", "&code="),
]


@pytest.mark.parametrize(("template", "name"), SHAPES)
def test_each_shape_loses_its_secret_and_keeps_its_name(template, name):
    redacted = redact(template.format(SECRET))
    assert SECRET not in redacted
    assert MARKER in redacted
    assert name in redacted
    assert redacted == template.format(MARKER)


@pytest.mark.parametrize(("template", "name"), SHAPES)
@pytest.mark.parametrize("wrap", [repr, json.dumps, lambda text: json.dumps(json.dumps(text))])
def test_a_quoted_or_escaped_shape_loses_its_secret(template, name, wrap):
    redacted = redact(f"value={wrap(template.format(SECRET))} logged")
    assert SECRET not in redacted
    assert redacted.endswith(" logged")


def test_the_rest_of_a_connection_string_stays_readable():
    text = "HostName=hub.azure-devices.net;SharedAccessKeyName=owner;SharedAccessKey=abc=;X=1"
    assert redact(text) == "HostName=hub.azure-devices.net;SharedAccessKeyName=owner;" + (
        "SharedAccessKey=***;X=1"
    )


def test_key_names_are_matched_whatever_their_case():
    text = "accountkey=abc1; SHAREDACCESSKEY=abc2; SIG=abc3; X-Api-Key: abc4; bearer abc5"
    redacted = redact(text)
    assert not any(f"abc{n}" in redacted for n in range(1, 6)), redacted


@pytest.mark.parametrize(
    "text",
    [
        "signature verified for sensor-1001",
        "design=blue; assign=2; sigma=3",
        "registrationId=sensor-1001 deviceId=AST-1001-dev assetId=AST-1001",
        "hub-us-east.azure-devices.net answered 429",
        "SharedAccessKeyName=iothubowner; AccountName=devstoreaccount1",
        "error code: 500, status_code=404, exit code=2",
        "GET /api/allocate?codec=h264&mode=fast 200",
        "the api key is missing; x-api-key-id: 7",
        "SharedAccessSignature header expected",
        "Authorization failed for the request",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


@pytest.mark.parametrize(
    "noise",
    [
        "\\" * 50_000,
        "'" * 50_000,
        'x-api-key: "' * 5_000,
        "sig=" * 10_000,
        "Authorization: " * 5_000,
    ],
)
def test_a_secret_after_a_long_hostile_run_is_still_redacted(noise):
    redacted = redact(f"{noise} AccountKey={SECRET}")
    assert SECRET not in redacted
    assert redacted.endswith("AccountKey=***")


# --- properties -------------------------------------------------------------------------------

secrets = st.text(
    alphabet=string.ascii_letters + string.digits + "+/=%-_.~", min_size=12, max_size=120
)
wrappers: st.SearchStrategy[Callable[[str], str]] = st.sampled_from(
    [str, repr, json.dumps, lambda text: json.dumps({"detail": text})]
)


@given(
    prefix=st.text(max_size=80),
    template=st.sampled_from([template for template, _ in SHAPES]),
    wrap=wrappers,
    separators=st.tuples(*[st.sampled_from([" ", "\n", "\t", ", ", " | "])] * 2),
    suffix=st.text(max_size=80),
    secret=secrets,
)
def test_no_embedded_secret_survives(prefix, template, wrap, separators, suffix, secret):
    assume(secret not in prefix + suffix + template.format(""))
    before, after = separators
    text = f"{prefix}{before}{wrap(template.format(secret))}{after}{suffix}"
    assert secret not in redact(text)


@given(text=st.text(max_size=300))
def test_redaction_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


TRIGGERS = ("key", "sig", "bearer", "authorization", "code")


@given(text=st.text(max_size=300))
def test_text_naming_no_secret_is_unchanged(text):
    assume(not any(trigger in text.lower() for trigger in TRIGGERS))
    assert redact(text) == text


# --- log records ------------------------------------------------------------------------------

CONNECTION = f"HostName=hub.azure-devices.net;SharedAccessKeyName=owner;SharedAccessKey={SECRET}"


@pytest.fixture
def capture() -> tuple[logging.Logger, io.StringIO]:
    """A logger outside the hierarchy (so pytest attaches no handler) whose one handler
    redacts, writing each message with its extra fields to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FieldsFormatter())
    handler.addFilter(RedactionFilter())
    logger = logging.Logger("test.redaction", logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


class FieldsFormatter(logging.Formatter):
    """`LEVEL message {extra fields}`, then the traceback if any."""

    _STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
        "message",
        "taskName",
    }

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in self._STANDARD}
        head, newline, tail = super().format(record).partition("\n")
        return f"{head} {fields}{newline}{tail}"


def test_a_secret_in_message_args_is_redacted(capture):
    logger, stream = capture
    logger.info("connecting with %s to %s", CONNECTION, "hub.azure-devices.net")
    output = stream.getvalue()
    assert SECRET not in output
    assert "SharedAccessKey=***" in output
    assert "to hub.azure-devices.net" in output


def test_secrets_in_extra_fields_are_redacted_without_touching_the_callers_values(capture):
    logger, stream = capture
    headers = {"x-api-key": "plain-api-key-value", "accept": "application/json"}
    hubs = [CONNECTION, ("url", f"https://a/q?sig={SECRET}")]
    nested = {"hubs": hubs, "count": 2}
    logger.warning(
        "asset call",
        extra={"detail": CONNECTION, "headers": headers, "nested": nested, "sig": "raw-sig-val"},
    )
    output = stream.getvalue()
    assert SECRET not in output
    assert "plain-api-key-value" not in output
    assert "raw-sig-val" not in output
    assert "'count': 2" in output
    assert "'accept': 'application/json'" in output
    assert headers["x-api-key"] == "plain-api-key-value"
    assert hubs[0] == CONNECTION


def _fail_with(text: str) -> None:
    raise ValueError(f"cannot parse {text}")


def test_a_secret_in_an_exception_and_its_traceback_is_redacted(capture):
    logger, stream = capture
    try:
        try:
            _fail_with(CONNECTION)
        except ValueError as inner:
            raise RuntimeError(f"start-up failed: AccountKey={SECRET}") from inner
    except RuntimeError:
        logger.exception("configuration rejected")
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "_fail_with" in output
    assert "ValueError: cannot parse HostName=hub.azure-devices.net" in output
    assert "RuntimeError: start-up failed: AccountKey=***" in output
    assert SECRET not in output


def test_a_record_with_a_secret_no_longer_carries_the_raw_exception():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    try:
        _fail_with(CONNECTION)
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactionFilter().filter(record)
    assert record.exc_info is None
    assert record.exc_text is not None
    assert SECRET not in record.exc_text
    assert "ValueError" in record.exc_text


def test_a_record_without_secrets_keeps_its_message_template_and_exception():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s of %d", ("3", 4), None)
    try:
        _fail_with("sensor-1001")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactionFilter().filter(record)
    assert (record.msg, record.args) == ("%s of %d", ("3", 4))
    assert record.exc_info is not None


def test_a_record_whose_args_do_not_fit_is_still_redacted(capture, capsys):
    logger, stream = capture
    logger.info("%s and %s and %d", CONNECTION)  # logging reports the bad call on stderr
    assert SECRET not in stream.getvalue() + capsys.readouterr().err


def test_a_device_log_field_is_redacted(capture):
    logger, stream = capture
    DeviceLog(logger, request_id="r-1").warning("asset call failed", detail=f"Bearer {SECRET}")
    output = stream.getvalue()
    assert SECRET not in output
    assert "Bearer ***" in output
    assert "'requestId': 'r-1'" in output


# --- installing on the root logger ------------------------------------------------------------


@pytest.fixture
def root_handlers() -> Iterator[list[logging.Handler]]:
    """The root logger's handlers and their filters, restored afterwards."""
    root = logging.getLogger()
    saved = [(handler, list(handler.filters)) for handler in root.handlers]
    level = root.level
    yield root.handlers
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler, filters in saved:
        handler.filters[:] = filters
        root.addHandler(handler)
    root.setLevel(level)


def test_install_covers_sdk_loggers_that_propagate_to_root(root_handlers):
    stream = io.StringIO()
    root = logging.getLogger()
    root.addHandler(logging.StreamHandler(stream))
    root.setLevel(logging.INFO)
    sdk = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    sdk.info("Request URL: 'https://acct.queue.core.windows.net/q?sv=1&sig=%s'", SECRET)
    assert SECRET in stream.getvalue(), "without redaction the key is logged"

    assert install_redaction() is True
    sdk.info("Request URL: 'https://acct.queue.core.windows.net/q?sv=1&sig=%s'", SECRET)
    logging.getLogger("azure.storage.queue").warning("retrying with %s", CONNECTION)
    last_lines = stream.getvalue().splitlines()[1:]
    assert last_lines == [
        "Request URL: 'https://acct.queue.core.windows.net/q?sv=1&sig=***'",
        "retrying with HostName=hub.azure-devices.net;SharedAccessKeyName=owner;"
        "SharedAccessKey=***",
    ]


def test_install_adds_one_filter_per_handler_however_often_it_is_called(root_handlers):
    root = logging.getLogger()
    first, second = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    root.addHandler(first)
    assert install_redaction() is True
    assert install_redaction() is False
    root.addHandler(second)
    assert install_redaction() is True
    for handler in root_handlers:
        assert sum(isinstance(f, RedactionFilter) for f in handler.filters) == 1


def test_install_reports_nothing_installed_without_root_handlers(root_handlers):
    root_handlers.clear()
    assert install_redaction() is False
