"""Structured logging: every line about a device carries its identifiers as fields."""

from observability.device_log import DEVICE_FIELDS, DeviceLog

__all__ = ["DEVICE_FIELDS", "DeviceLog"]
