"""IoT Hub's error responses: one exception type carrying status, error code and headers."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# The code each status gets when a fault is injected without naming one.
DEFAULT_CODES: Mapping[int, str] = {
    400: "ArgumentInvalid",
    401: "IotHubUnauthorizedAccess",
    403: "IotHubQuotaExceeded",
    404: "DeviceNotFound",
    409: "DeviceAlreadyExists",
    412: "PreconditionFailed",
    429: "ThrottlingException",
    500: "ServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class IotHubError(Exception):
    """An error answered the way IoT Hub does: `{"Message": "ErrorCode:<code>;...", ...}`."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = {"iothub-errorcode": code, **(headers or {})}

    def to_json(self) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return {
            "Message": f"ErrorCode:{self.code};{self.message}",
            "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        }


def argument_invalid(message: str) -> IotHubError:
    return IotHubError(400, "ArgumentInvalid", message)


def unauthorized(message: str) -> IotHubError:
    return IotHubError(401, "IotHubUnauthorizedAccess", message)


def device_not_found(device_id: str) -> IotHubError:
    return IotHubError(404, "DeviceNotFound", f"Device {device_id} not registered")


def device_exists(device_id: str) -> IotHubError:
    return IotHubError(409, "DeviceAlreadyExists", f"A device with ID '{device_id}' exists")


def precondition_failed(what: str) -> IotHubError:
    return IotHubError(412, "PreconditionFailed", f"Precondition failed: {what}")


def throttled(retry_after_seconds: float, what: str) -> IotHubError:
    seconds = max(1, math.ceil(retry_after_seconds))
    return IotHubError(
        429,
        "ThrottlingException",
        f"{what} exceeded this hub's rate limit; retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def injected(status: int, code: str | None) -> IotHubError:
    """The answer of a request that a fault rule caught."""
    chosen = code or DEFAULT_CODES.get(status, "ServerError" if status >= 500 else "BadRequest")
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return IotHubError(status, chosen, "injected by POST /devstack/faults", headers=headers)
