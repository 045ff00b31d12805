"""IoT Hub failures, split by what a caller should do about them."""

from __future__ import annotations

from app_errors import AppError, BadInput, Conflict, DependencyFailed, DependencyUnavailable


class IotHubError(AppError):
    """Base of every IoT Hub failure. Messages never carry keys or tokens."""


class UnknownHub(IotHubError, BadInput):
    """No connection is configured for this hub host name."""


class DeviceNotFound(IotHubError, Conflict):
    """404: the device (or its twin) does not exist on that hub."""


class TwinPreconditionFailed(IotHubError, Conflict):
    """412: the etag is stale; re-read and re-apply."""


class HubThrottled(IotHubError, DependencyUnavailable):
    """429: over the hub's quota (S1: 50 twin updates/s); back off."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HubUnavailable(IotHubError, DependencyUnavailable):
    """Transport error, timeout or 5xx: transient."""


class HubAccessDenied(IotHubError, DependencyFailed):
    """401/403: our connection string or identity is wrong. Permanent until fixed."""


class HubRequestRejected(IotHubError, DependencyFailed):
    """Any other 4xx: the request was wrong; retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
