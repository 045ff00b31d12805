"""Assemble one emulated hub: its store, policies, authenticator, throttles, faults, delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack.identity.tokens import TokenVerifier

from .delivery import EventDelivery
from .endpoints import HubEndpoint, short_name
from .faults import FaultInjector
from .hub import Hub
from .policies import DEFAULT_POLICY_RIGHTS
from .sas import Authenticator
from .store import HubStore
from .throttling import TokenBucket, bucket_or_none

DATABASE_SUFFIX = ".sqlite3"


@dataclass(frozen=True)
class Limits:
    """Per-hub quotas (0 turns one off) and the largest query page (IoT Hub's is 1000)."""

    twin_updates_per_second: float = 50.0
    identity_ops_per_minute: float = 0.0
    queries_per_minute: float = 0.0
    query_page_size_max: int = 1000


@dataclass
class HubRuntime:
    """Everything the HTTP layer needs to serve one hub's port."""

    endpoint: HubEndpoint
    hub: Hub
    auth: Authenticator
    faults: FaultInjector
    twin_updates: TokenBucket | None
    identity_ops: TokenBucket | None
    queries: TokenBucket | None
    query_page_size_max: int
    delivery: EventDelivery | None
    clients: set[tuple[str, int]] = field(default_factory=set)
    """The (address, port) of every TCP connection that has sent a request: how many
    connections clients opened (GET /devstack/stats), e.g. to check that they keep them alive."""

    def close(self) -> None:
        self.hub.store.close()


def database_path(data_dir: Path, hub_name: str) -> Path:
    return data_dir / f"{hub_name}{DATABASE_SUFFIX}"


def open_hub(
    data_dir: Path,
    name: str,
    port: int,
    *,
    limits: Limits,
    token_verifier: TokenVerifier | None = None,
    events_url: str | None = None,
) -> HubRuntime:
    """Open (creating on first start) the hub's database and keys; `{hub}` in events_url
    becomes the hub's short name, so each hub may post to its own Event Hub path. Bearer
    tokens are accepted only with a token_verifier (sas.entra_verifier)."""
    store = HubStore(database_path(data_dir, name), record_delivery=events_url is not None)
    endpoint = HubEndpoint(name=name, port=port, policies=store.policies(DEFAULT_POLICY_RIGHTS))
    delivery = None
    if events_url is not None:
        delivery = EventDelivery(name, store, events_url.replace("{hub}", short_name(name)))
    hub = Hub(short_name(name), store, on_event=delivery.wake if delivery else None)
    return HubRuntime(
        endpoint=endpoint,
        hub=hub,
        auth=Authenticator(endpoint.policies, endpoint.token_resources(), token_verifier),
        faults=FaultInjector(),
        twin_updates=bucket_or_none(limits.twin_updates_per_second, 1.0),
        identity_ops=bucket_or_none(limits.identity_ops_per_minute, 60.0),
        queries=bucket_or_none(limits.queries_per_minute, 60.0),
        query_page_size_max=limits.query_page_size_max,
        delivery=delivery,
    )
