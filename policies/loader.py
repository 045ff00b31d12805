"""Read the policy file: TOML, its CA files resolved, validated; errors name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from app_errors import Misconfigured
from policies.model import Policy
from policies.trust import resolve_ca_files


class PolicyError(Misconfigured, ValueError):
    """The policy file is missing, not TOML, or breaks a rule; the message names file and key."""


def parse_policy(text: str, source: str, base_dir: Path | None = None) -> Policy:
    """`base_dir` resolves the CA files the policy names (the policy file's folder)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {source} is not valid TOML: {exc}") from exc
    try:
        data = resolve_ca_files(data, base_dir)
    except ValueError as exc:
        raise PolicyError(f"policy file {source} is invalid: {exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_dotted(error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise PolicyError(f"policy file {source} is invalid: {problems}") from exc


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from exc
    return parse_policy(text, str(path), path.parent)


def _dotted(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
        else:
            parts.append(part)
    return ".".join(parts)
