"""Conditional request headers (RFC 9110 If-Match / If-None-Match) against an asset version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .problems import invalid

_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*')


@dataclass(frozen=True)
class EntityTags:
    """A parsed header value: `*`, or the opaque tags it lists with their weakness."""

    any: bool
    tags: tuple[tuple[bool, str], ...] = ()

    def strong_match(self, version: int) -> bool:
        return self.any or any(not weak and tag == str(version) for weak, tag in self.tags)

    def weak_match(self, version: int) -> bool:
        return self.any or any(tag == str(version) for _, tag in self.tags)

    def describe(self) -> str:
        return "*" if self.any else ", ".join(f'"{tag}"' for _, tag in self.tags)


def parse_entity_tags(header: str, value: str | None) -> EntityTags | None:
    """None when the header is absent; 400 when it is neither `*` nor quoted tags like "3"."""
    if value is None:
        return None
    if value.strip() == "*":
        return EntityTags(any=True)
    tags: list[tuple[bool, str]] = []
    for part in value.split(","):
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise invalid(header, 'must be * or a list of quoted ETags such as "3"')
        tags.append((match.group(1) is not None, match.group(2)))
    return EntityTags(any=False, tags=tuple(tags))


@dataclass(frozen=True)
class Preconditions:
    if_match: EntityTags | None = None
    if_none_match: EntityTags | None = None
