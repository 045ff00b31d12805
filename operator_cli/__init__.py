"""The operator CLI: look into and act on what the app left for humans (`python -m operator_cli`).

`dead-letters`: list, show and replay the dead-letter queue's messages. `audit`: the audit
trail of a device, asset or registration, as a timeline.
"""
