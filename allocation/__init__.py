"""The DPS custom allocation webhook: contract, attestation, trust, hub selection, decision, the
service that runs them, and its HTTP endpoint.

Import what you need from its module: this file re-exports nothing, so that importing a pure
module (allocation.decision, say) loads no adapter. The HTTP trigger lives in
allocation.blueprint, imported only by function_app.
"""
