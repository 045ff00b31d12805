"""The enrollment groups in force, re-read when their files change; which group signed a device."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.dps_emulator.enrollment_groups import EnrollmentGroup, load_enrollment_groups
from devstack.dps_emulator.errors import StartupError

logger = logging.getLogger("devstack.dps_emulator.groups")

_RESCAN_SECONDS = 0.5


class GroupCatalog:
    """Groups loaded at start-up (errors are fatal) and reloaded on change (errors are logged)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._signature = self._scan()
        self._groups = load_enrollment_groups(directory)
        self._checked = time.monotonic()
        self._contexts: list[ssl.SSLContext] = []
        self._trusted: set[bytes] = set()

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def groups(self) -> list[EnrollmentGroup]:
        self._refresh()
        return self._groups

    def trust_in(self, context: ssl.SSLContext) -> None:
        """Make the TLS server accept client chains that end at any group's signing CA."""
        self._contexts.append(context)
        for der in self._trusted:
            context.load_verify_locations(cadata=der)
        self._add_trust(self._groups)

    def find(self, leaf: x509.Certificate) -> tuple[EnrollmentGroup, x509.Certificate] | None:
        """The group whose signing certificate issued `leaf`, and that certificate."""
        for group in self.groups:
            signer = group.signed(leaf)
            if signer is not None:
                return group, signer
        return None

    def reload(self) -> None:
        """Re-read the files now, changed or not (two writes may share an mtime): the service
        API's writes take effect before it answers."""
        self._checked = time.monotonic()
        self._signature = (("", -1, -1),)
        self._reload_if_changed()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RESCAN_SECONDS:
            return
        self._checked = now
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        signature = self._scan()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            groups = load_enrollment_groups(self._directory)
        except StartupError as exc:
            logger.error("enrollment groups not reloaded, keeping the previous ones: %s", exc)
            return
        self._groups = groups
        self._add_trust(groups)
        logger.info("enrollment groups reloaded: %s", ", ".join(g.group_id for g in groups))

    def _add_trust(self, groups: list[EnrollmentGroup]) -> None:
        for group in groups:
            for certificate in group.signing_certificates:
                der = certificate.public_bytes(serialization.Encoding.DER)
                if der in self._trusted:
                    continue
                self._trusted.add(der)
                for context in self._contexts:
                    context.load_verify_locations(cadata=der)

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        if not self._directory.is_dir():
            return ()
        entries = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(entries)
