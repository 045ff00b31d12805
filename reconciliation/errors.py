"""Why reconciling a message must wait."""

from __future__ import annotations

from app_errors import Conflict
from sync.errors import SyncError


class ReplacementPending(SyncError, Conflict):
    """The replacement's link is not on the asset yet; try again later."""
