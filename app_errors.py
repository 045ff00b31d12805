"""The app's one exception root, and the few families every error it raises belongs to.

A family says what to do about an error, wherever it is caught: the webhook's status code,
whether a trigger's retry or the reconciliation queue may help, and whether it must be
dead-lettered for an operator. Each package keeps its own base (AllocationError, AssetError,
IotHubError, QueueError...) for what it is about; the family says what it means.

- BadInput: what we were given cannot be used. The webhook answers 400 (413 when too large);
  queued work is dead-lettered, not replayable.
- Refused: understood, and refused by a rule. 400 (409 when the asset is at fault);
  dead-lettered, not replayable.
- Conflict: the state moved under us, or is not there yet. 409; queued work re-reads and
  is retried.
- DependencyUnavailable: a dependency cannot answer now. 503 with Retry-After; retried later.
- DependencyFailed: a dependency refused us or broke its contract. 502; dead-lettered for an
  operator.
- Misconfigured: a setting or the policy file is wrong. The app does not start.
"""

from __future__ import annotations


class AppError(Exception):
    """Root of every error the app raises on purpose. Messages name what failed and never
    carry a secret, another device's data or a dependency's own error text."""


class BadInput(AppError):
    """What we were given (a request, an event, a message) cannot be used; retrying the same
    input cannot help."""


class Refused(AppError):
    """Understood, and refused by a rule (the policy, trust anchors, the asset system's rules)."""


class Conflict(AppError):
    """The state changed under us, or is not there yet: re-read and try again."""


class DependencyUnavailable(AppError):
    """A dependency (the asset system, a hub, storage) cannot answer now: an outage, a timeout,
    throttling or an open breaker. Worth trying again later."""


class DependencyFailed(AppError):
    """A dependency refused our credentials or our request, or answered what its contract
    forbids: trying the same call again will not help until someone fixes it."""


class Misconfigured(AppError):
    """A setting or the policy file is wrong; the message names which and why."""
