"""Asset API failures, split by what a caller should do about them."""

from __future__ import annotations

from app_errors import AppError, Conflict, DependencyFailed, DependencyUnavailable


class AssetError(AppError):
    """Base of every asset API failure. Messages never carry credentials, nor the asset
    system's own error text (a problem's title or detail is untrusted; its type URI is kept)."""


class AssetNotFound(AssetError, Conflict):
    """404: the asset does not exist."""


class AssetConflict(AssetError, Conflict):
    """409: the asset cannot take the change (linked to another device, retired...)."""


class AssetVersionConflict(AssetError, Conflict):
    """412: the If-Match version is stale; re-read and re-apply."""


class AssetAccessDenied(AssetError, DependencyFailed):
    """401/403: our credentials are wrong or lack a permission. Permanent until fixed."""


class AssetRequestRejected(AssetError, DependencyFailed):
    """Any other 4xx: our request was wrong. Permanent; retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class AssetUnavailable(AssetError, DependencyUnavailable):
    """Transport error, timeout, 429 or 5xx: an outage, worth trying again later.

    `status` is None for transport errors and timeouts, else the HTTP status.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class AssetCircuitOpen(AssetUnavailable):
    """Not attempted: recent calls failed and the circuit breaker is open. Fails in microseconds."""


class AssetContractViolation(AssetError, DependencyFailed):
    """The response is not the shape the contract promises."""
