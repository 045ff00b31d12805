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
