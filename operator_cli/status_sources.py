"""What `status` reads, each source on its own, so that one that fails never hides the others.

- each queue: its length and a peek at its first 32 messages (a peek consumes nothing and hides
  nothing from the app);
- the app's health endpoint, with the function key in a header (never in the URL);
- on each hub, the twins whose provisioningState is not `provisioned`: one query per hub, up
  to DEVICE_LIMIT twins. Provisioned devices are not counted: that would read every twin of
  the fleet (IoT Hub's COUNT() answers rows the SDK cannot read), against the hub's query
  quota, which the app's pending sweep needs too.

Every failure becomes an Unread whose text names the source, never a key or a URL's secret.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from app_errors import AppError
from health.report import HealthReport
from iothub_client import IotHubRegistry
from observability import redact
from operator_cli.errors import OperatorError
from operator_cli.queue_calls import QueueMissing, queue_call
from operator_cli.status_config import HEALTH_KEY_ENV, HEALTH_KEY_FILE_ENV, HealthEndpoint
from operator_cli.status_summary import (
    HubDevices,
    PeekedMessage,
    QueueGlance,
    Unread,
    tally_devices,
)
from storage_access.clients import StorageClients

PEEK_LIMIT = 32
"""Azure Storage peeks at most 32 messages."""
TIMEOUT_SECONDS = 10.0
DEVICE_LIMIT = 1000
"""Twins read per hub: one page of an IoT Hub query."""
NOT_PROVISIONED = "SELECT * FROM devices WHERE tags.provisioningState != 'provisioned'"
"""A twin without the tag (a device this app never placed) compares as undefined: not found."""
_MAX_HEALTH_BYTES = 1 << 20


async def glance(storage: StorageClients, queue: str, source: str) -> QueueGlance | Unread:
    """`source`: where the storage connection came from (named when it is refused)."""
    client = storage.queue(queue)
    try:
        properties = await queue_call(client.get_queue_properties(), queue=queue, source=source)
        peeked = await queue_call(
            client.peek_messages(max_messages=PEEK_LIMIT), queue=queue, source=source
        )
    except QueueMissing:
        return QueueGlance(0, [])
    except OperatorError as exc:
        return Unread(str(exc))
    return QueueGlance(
        properties.approximate_message_count or 0,
        [
            PeekedMessage(str(message.id), message.inserted_on, str(message.content or ""))
            for message in peeked
        ],
    )


async def ask_health(endpoint: HealthEndpoint) -> HealthReport | Unread:
    import aiohttp

    headers = {"x-functions-key": endpoint.function_key} if endpoint.function_key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session,
            # No redirects: the key would travel to wherever the app points.
            session.get(endpoint.url, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
            body = await response.content.read(_MAX_HEALTH_BYTES)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Unread(f"the app did not answer ({type(exc).__name__})")
    if status == 200:
        try:
            return HealthReport.model_validate_json(body)
        except ValidationError:
            return Unread("the app answered 200, but not with a health report this CLI can read")
    if status in (401, 403):
        return Unread(
            f"the app refused the function key ({status}): set {HEALTH_KEY_ENV} or "
            f"{HEALTH_KEY_FILE_ENV} to the health function's key or a host key"
        )
    if status == 404:
        return Unread("the app has no health endpoint at this URL (404)")
    return Unread(f"the app answered {status}")


async def devices_not_provisioned(registry: IotHubRegistry, hubs: list[str]) -> list[HubDevices]:
    return list(await asyncio.gather(*(_hub_devices(registry, hub) for hub in hubs)))


async def _hub_devices(registry: IotHubRegistry, hub: str) -> HubDevices:
    try:
        twins = await registry.query_twins(hub, NOT_PROVISIONED, limit=DEVICE_LIMIT)
    except AppError as exc:
        # The adapter's errors name the hub and the answer, never the query or a key.
        problem = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
        return HubDevices(hub, {}, None, False, problem)
    return tally_devices(hub, (twin.tags for twin in twins), limit=DEVICE_LIMIT)
