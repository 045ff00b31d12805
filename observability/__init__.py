"""Structured logging: every line about a device carries its identifiers as fields, and no line
carries key material."""

from observability.device_log import DEVICE_FIELDS, DeviceLog
from observability.redaction import RedactionFilter, install_redaction, redact

__all__ = [
    "DEVICE_FIELDS",
    "DeviceLog",
    "RedactionFilter",
    "install_redaction",
    "redact",
]
