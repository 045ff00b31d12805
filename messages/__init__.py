"""The messages the app's own queues carry (reconciliation and dead letters): one versioned schema
each, shared by the flows that write them and the handlers and operator tools that read them."""

from messages.queues import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterSource,
    MessageKind,
    ReconciliationMessage,
    capped_event,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "DeadLetterSource",
    "MessageKind",
    "ReconciliationMessage",
    "capped_event",
]
