"""Which trigger parameter annotations the Python worker accepts, as its indexing decides."""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

from devstack.function_host.app_loader import FunctionSpec
from devstack.function_host.trigger_data import TriggerConverter

# typing generics that are not a type of value (Union, Optional, Tuple, ClassVar, Callable).
_NOT_GENERIC_TYPES: tuple[Any, ...] = (
    typing.Union,
    types.UnionType,
    tuple,
    typing.ClassVar,
    collections.abc.Callable,
)


class FunctionLoadError(RuntimeError):
    """What the Python worker raises for a trigger parameter annotation it cannot bind."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")


def is_typing_generic(annotation: object) -> bool:
    """Whether the worker counts `annotation` as a generic type (typing_inspect's
    is_generic_type on a non-class): a subscripted typing generic such as `List[X]` or
    `Iterable[X]`. A PEP 585 alias (`list[X]`, azure-functions-python-worker issue #1034), a
    bare `typing.List`, a Union, a Tuple, a ClassVar or a Callable is not one."""
    if isinstance(annotation, types.GenericAlias) or not typing.get_args(annotation):
        return False
    return typing.get_origin(annotation) not in _NOT_GENERIC_TYPES


def uses_generic_binding(spec: FunctionSpec) -> bool:
    """The trigger parameter is annotated str or bytes: the worker's generic binding passes
    the raw value instead of converting it."""
    return spec.annotations.get(spec.trigger.name) in (str, bytes)


def annotation_problem(spec: FunctionSpec, converter: TriggerConverter) -> str | None:
    """Why the Python worker would reject the trigger parameter's annotation, if it would.

    Mirrors the worker's indexing: str/bytes use the generic binding; any other annotation
    must be a class or a typing generic that the trigger's converter accepts.
    """
    name = spec.trigger.name
    if name not in spec.annotations or uses_generic_binding(spec):
        return None
    annotation = spec.annotations[name]
    if not isinstance(annotation, type) and not is_typing_generic(annotation):
        return f"binding {name} has invalid non-type annotation {annotation!r}"
    try:
        accepted = bool(converter.check_input_type_annotation(annotation))
    except TypeError as exc:
        return f"{type(exc).__name__}: {exc}"
    if accepted:
        return None
    type_name = getattr(annotation, "__name__", repr(annotation))
    return (
        f'type of {name} binding in function.json "{spec.trigger.type}" does not match '
        f'its Python annotation "{type_name}"'
    )
