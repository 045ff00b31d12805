"""The identity service's files: its signing key pair and its identity header, made once.

Both live in the data dir so that a restarted service signs with the same key (resources
configured with the public key keep accepting its tokens) and answers the same header (a
running function host keeps getting tokens).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .tokens import (
    TokenIssuer,
    generate_signing_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
)

SIGNING_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
IDENTITY_HEADER_FILE = "identity-header"


@dataclass(frozen=True)
class IdentityFiles:
    signing_key: Path
    public_key: Path
    identity_header: Path


def identity_files(data_dir: Path) -> IdentityFiles:
    return IdentityFiles(
        signing_key=data_dir / SIGNING_KEY_FILE,
        public_key=data_dir / PUBLIC_KEY_FILE,
        identity_header=data_dir / IDENTITY_HEADER_FILE,
    )


def ensure_identity_files(data_dir: Path) -> IdentityFiles:
    """Create the key pair and the header on first start; later starts reuse them.

    Secrets are written 0600. Raises ValueError if an existing key file is not an RSA key.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    files = identity_files(data_dir)
    _create_once(files.signing_key, private_key_pem(generate_signing_key()))
    key = load_private_key(files.signing_key.read_bytes())
    public = public_key_pem(key.public_key())
    if not files.public_key.exists() or files.public_key.read_bytes() != public:
        _replace(files.public_key, public, mode=0o644)
    _create_once(files.identity_header, secrets.token_urlsafe(32).encode("ascii"))
    return files


def load_issuer(data_dir: Path) -> TokenIssuer:
    """The issuer signing with data_dir's key: tests use it to make tokens of their own."""
    return TokenIssuer(load_private_key(identity_files(data_dir).signing_key.read_bytes()))


def read_identity_header(files: IdentityFiles) -> str:
    return files.identity_header.read_text(encoding="ascii").strip()


def read_public_key(path: Path) -> bytes:
    """The PEM at `path`, checked to be an RSA public key; OSError or ValueError otherwise."""
    pem = path.read_bytes()
    load_public_key(pem)
    return pem


def _create_once(path: Path, content: bytes) -> None:
    """Write `content` to `path` unless it exists; a racing process's file wins whole."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write(tmp, content, mode=0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _replace(path: Path, content: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write(tmp, content, mode=mode)
    os.replace(tmp, path)


def _write(path: Path, content: bytes, *, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
