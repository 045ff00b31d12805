"""Trigger data as the Functions host sends it to the Python worker, and as the worker decodes it.

The host types each value as its ToRpc does: strings as `string`, string[] and long[] as
collections, everything else as Json.NET `json`. The worker then hands the trigger parameter
the raw value (the generic binding, for a str or bytes annotation) or what the binding's
InConverter builds from the data and the trigger metadata.
"""

from __future__ import annotations

import datetime
import json
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from azure.functions.meta import Datum


class TriggerConverter(Protocol):
    """A binding's InConverter class, e.g. QueueMessageInConverter (classmethods only)."""

    def check_input_type_annotation(self, pytype: type) -> bool: ...

    def decode(self, data: Datum, *, trigger_metadata: Mapping[str, Datum]) -> Any: ...


def json_datum(value: Any) -> Datum:
    return Datum(value=json.dumps(value), type="json")


def string_datum(value: str) -> Datum:
    return Datum(value=value, type="string")


def json_time(moment: datetime.datetime | None) -> Datum | None:
    """A DateTimeOffset as the host sends it: Json.NET text like "2024-05-01T10:00:00+00:00"."""
    if moment is None:
        return None
    moment = moment.astimezone(datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return json_datum(text + "+00:00")


def collection(kind: Literal["string", "bytes", "sint64"], values: list[Any]) -> Datum:
    """A protobuf Collection* message: the converters and Datum read `.string` / `.bytes`."""
    return Datum(value=types.SimpleNamespace(**{kind: values}), type=f"collection_{kind}")


def generic_decode(data: Datum) -> Any:
    """The worker's GenericBinding.decode, used for str/bytes annotations."""
    if data.type in ("string", "bytes", "json"):
        return data.value
    raise ValueError(f'unexpected type of data received for the "generic" binding : {data.type!r}')


def trigger_value(
    converter: TriggerConverter,
    data: Datum,
    metadata: Callable[[], Mapping[str, Datum]],
    *,
    generic: bool,
) -> Any:
    """What the worker passes as the trigger parameter; `metadata` is built only if used."""
    if generic:
        return generic_decode(data)
    return converter.decode(data, trigger_metadata=metadata())
