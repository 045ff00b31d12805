"""Conditional request headers (RFC 9110 If-Match / If-None-Match) against an asset version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .problems import invalid

# RFC 9110's If-Match / If-None-Match: `*`, or a comma-separated list of entity tags, each
# optionally weak (W/), its opaque part printable ASCII without `"`; spaces or tabs around commas.
# asset_client/openapi.yaml documents the list's pattern; a value that is neither is a 400.
_ETAG = r'(?:W/)?"[\x21\x23-\x7E]*"'
ENTITY_TAG_LIST = re.compile(rf"[ \t]*{_ETAG}(?:[ \t]*,[ \t]*{_ETAG})*[ \t]*")
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7E]*)"')


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
    if value.strip(" \t") == "*":
        return EntityTags(any=True)
    if not ENTITY_TAG_LIST.fullmatch(value):
        raise invalid(header, 'must be * or a list of quoted ETags such as "3"')
    # A tag may hold a comma, so the tags are found between their quotes, not split on commas.
    tags = tuple((m.group(1) is not None, m.group(2)) for m in _ENTITY_TAG.finditer(value))
    return EntityTags(any=False, tags=tags)


@dataclass(frozen=True)
class Preconditions:
    if_match: EntityTags | None = None
    if_none_match: EntityTags | None = None
