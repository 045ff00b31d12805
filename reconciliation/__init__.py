"""Finishing deferred work: the reconciliation queue's consumer, its poison handler and the
sweep of overdue fallback devices. Import from the module."""
