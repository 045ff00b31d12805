"""How many messages a storage queue holds, and waiting until queues are empty."""

from __future__ import annotations

import time
from collections.abc import Sequence

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient


def queue_depth(connection_string: str, name: str) -> int:
    """Messages in the queue, the leased (invisible) ones included; 0 if it does not exist."""
    with QueueClient.from_connection_string(connection_string, name) as queue:
        try:
            return int(queue.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0


def wait_drained(connection_string: str, names: Sequence[str], *, timeout: float = 30) -> bool:
    """Until every queue in `names` is empty, that is each message processed and deleted.

    False if one still held messages at `timeout`.
    """
    deadline = time.monotonic() + timeout
    while any(queue_depth(connection_string, name) for name in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
