"""The names of the allocation span and its attributes, in one place for the code, the tests and
docs/observability.md."""

ALLOCATION_SPAN = "dps.allocate"

REGISTRATION_ID = "dps.registration_id"
DEVICE_ID = "dps.device_id"
ASSET_ID = "asset.id"
# OpenTelemetry's FaaS convention: the Functions invocation id, the requestId of every log line.
REQUEST_ID = "faas.invocation_id"
HUB = "dps.allocation.hub"
HUB_SELECTION = "dps.allocation.hub_selection"
ROLE = "dps.allocation.role"
ROLE_REASON = "dps.allocation.role_reason"
# allocated | fallback | refused | failed
OUTCOME = "dps.allocation.outcome"
# The policy's word when it is not a plain allocation: the fallback's cause or the refusal's code.
REASON = "dps.allocation.reason"

ASSET_EVENT_SPAN = "sync.asset_event"
TWIN_BATCH_SPAN = "sync.twin_batch"
TWIN_CHANGE_SPAN = "sync.twin_change"
RECONCILIATION_SPAN = "reconciliation.message"
AUDIT_BATCH_SPAN = "audit.batch"

# The CloudEvents semantic conventions' names for the event a span handles.
EVENT_ID = "cloudevents.event_id"
EVENT_TYPE = "cloudevents.event_type"
SYNC_RESULT = "sync.result"
TWIN_BATCH_SIZE = "messaging.batch.message_count"
RECONCILIATION_KIND = "reconciliation.kind"
RECONCILIATION_RESULT = "reconciliation.result"
DEQUEUE_COUNT = "messaging.azure_queue.dequeue_count"
AUDIT_ENTRIES = "audit.entries"
AUDIT_RESULT = "audit.result"
