"""Finishing deferred work: the reconciliation queue's consumer and its poison handler."""

from reconciliation.reconciler import Reconciler

__all__ = ["Reconciler"]
