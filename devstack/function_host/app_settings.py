"""App settings as binding properties use them: `%name%` references resolved like the host."""

from __future__ import annotations

import re
from collections.abc import Mapping

_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


class UnresolvedSetting(LookupError):
    """A `%name%` reference names no app setting."""


def resolve_setting_references(value: str, environ: Mapping[str, str]) -> str:
    """Replace every `%name%` with that app setting, like the host's name resolver."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        resolved = environ.get(name)
        if resolved is None:
            raise UnresolvedSetting(f"'%{name}%' does not resolve to a value")
        return resolved

    return _SETTING_REFERENCE.sub(replace, value)
