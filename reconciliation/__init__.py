"""Finishing deferred work: the reconciliation queue's consumer and its poison handler."""

from reconciliation.pending_sweep import PendingSweep
from reconciliation.reconciler import Reconciler

__all__ = ["PendingSweep", "Reconciler"]
