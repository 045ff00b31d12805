"""The operator CLI: look into and act on what the app left for humans (`python -m operator_cli`).

Its first command is `dead-letters`: list, show and replay the dead-letter queue's messages.
"""
