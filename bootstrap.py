"""The composition root: settings -> adapters -> services, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from allocation.service import AllocationService
from asset_client import AssetRepository
from audit import AuditTrail
from audit.writer import AuditWriter
from iothub_client import HubConnections, IotHubRegistry
from observability import redact
from policies import Policy, PolicyError, load_policy
from reconciliation.backlog_probe import BacklogProbe
from reconciliation.pending_sweep import PendingSweep
from reconciliation.reconciler import Reconciler
from resilience.outbox import Outbox
from resilience.queue_port import BacklogSource
from settings import AppSettings, ConfigurationError, load_settings
from storage_access import StorageConfigError
from sync.asset_sync_service import AssetToTwinSync
from sync.device_sync_service import TwinToAssetSync

if TYPE_CHECKING:
    from resilience.breaker import Breaker


@dataclass(frozen=True)
class Services:
    settings: AppSettings
    policy: Policy
    assets: AssetRepository
    allocation: AllocationService
    iot_hubs: IotHubRegistry
    outbox: Outbox
    asset_sync: AssetToTwinSync
    device_sync: TwinToAssetSync
    reconciler: Reconciler
    pending_sweep: PendingSweep
    backlog_probe: BacklogProbe
    audit_trail: AuditTrail
    audit_writer: AuditWriter
    closers: tuple[Any, ...] = ()

    async def aclose(self) -> None:
        await self.assets.aclose()
        for closer in self.closers:
            await closer.aclose()

    def breakers(self) -> tuple[Breaker, ...]:
        """The live circuit breakers: the asset API's, then each configured hub's (the health
        endpoint reads them)."""
        return _circuit_breakers(self.assets, self.iot_hubs)


_configuration: tuple[AppSettings, Policy] | None = None
_services: Services | None = None


def load_configuration() -> tuple[AppSettings, Policy]:
    """Read and validate settings and policy; raise ConfigurationError naming what is wrong."""
    global _configuration
    if _configuration is None:
        settings = load_settings()
        try:
            policy = load_policy(settings.policy_path)
        except PolicyError as exc:
            raise ConfigurationError(f"POLICY_FILE: {exc}") from exc
        hub_connections(settings)
        _configuration = (settings, policy)
    return _configuration


def start_telemetry() -> bool:
    """Configure OpenTelemetry from the settings, once; True if spans are exported."""
    from observability.telemetry import configure, plan_telemetry

    settings, _ = load_configuration()
    connection_string = settings.applicationinsights_connection_string
    return configure(
        plan_telemetry(
            otlp_endpoint=str(settings.otel_exporter_otlp_endpoint or "") or None,
            applicationinsights_connection_string=(
                connection_string.get_secret_value() if connection_string else None
            ),
            azure_client_id=settings.azure_client_id,
        )
    )


def hub_connections(settings: AppSettings) -> HubConnections:
    """SAS hubs from IOT_HUB_CONNECTION_STRINGS plus managed-identity hubs; each hub once."""
    try:
        by_sas = HubConnections.from_connection_strings(settings.iot_hub_connection_map())
    except ValueError as exc:
        raise ConfigurationError(f"IOT_HUB_CONNECTION_STRINGS: {exc}") from None
    by_identity = HubConnections.managed_identity(
        settings.managed_identity_hubs(), settings.iot_hub_endpoints
    )
    both = sorted(set(by_sas) & set(by_identity))
    if both:
        raise ConfigurationError(
            "IOT_HUB_MANAGED_IDENTITY_HUBS and IOT_HUB_CONNECTION_STRINGS both name "
            + ", ".join(both)
        )
    return HubConnections([*by_sas.values(), *by_identity.values()])


def _token_credential(settings: AppSettings) -> Any:
    """The app's own identity for IoT Hub: the managed identity on Azure (AZURE_CLIENT_ID for a
    user-assigned one), a developer's sign-in locally."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)


def _asset_api_auth(settings: AppSettings) -> Any:
    from asset_client.auth import ApiKey, EntraToken

    if settings.asset_api_audience is not None:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        return EntraToken(credential, settings.asset_api_audience)
    if settings.asset_api_key is not None:
        return ApiKey(settings.asset_api_key.get_secret_value())
    return None


def build_services(settings: AppSettings, policy: Policy) -> Services:
    connections = hub_connections(settings)
    hub_names = [connection.hub for connection in connections.values()]
    assets = _asset_repository(settings, policy)
    iot_hubs = _iot_hubs(settings, policy, connections)
    storage = _storage_adapters(settings)
    outbox = storage.outbox
    asset_sync = AssetToTwinSync(
        assets=assets,
        hubs=iot_hubs,
        hub_names=hub_names,
        policy=policy,
        asset_api_public_url=settings.public_asset_url,
        outbox=outbox,
    )
    device_sync = TwinToAssetSync(assets=assets, policy=policy, outbox=outbox)
    return Services(
        settings=settings,
        policy=policy,
        assets=assets,
        allocation=AllocationService(
            assets=assets,
            policy=policy,
            asset_api_public_url=settings.public_asset_url,
            outbox=outbox,
        ),
        iot_hubs=iot_hubs,
        outbox=outbox,
        asset_sync=asset_sync,
        device_sync=device_sync,
        reconciler=Reconciler(
            assets=assets,
            hubs=iot_hubs,
            asset_sync=asset_sync,
            device_sync=device_sync,
            outbox=outbox,
        ),
        pending_sweep=PendingSweep(
            hubs=iot_hubs, hub_names=hub_names, policy=policy, outbox=outbox
        ),
        audit_trail=storage.audit_trail,
        audit_writer=storage.audit_writer,
        backlog_probe=BacklogProbe(storage.backlog_sources),
        closers=storage.closers,
    )


def _asset_repository(settings: AppSettings, policy: Policy) -> AssetRepository:
    # Imported here so that importing function_app (cold start) does not pay for aiohttp.
    from asset_client.http_adapter import HttpAssetRepository
    from resilience.breaker import Breaker
    from resilience.resilient_assets import ResilientAssetRepository, is_outage
    from resilience.retry import RetryPolicy

    return ResilientAssetRepository(
        HttpAssetRepository(
            str(settings.asset_api_url),
            auth=_asset_api_auth(settings),
            timeout_seconds=settings.asset_api_timeout_seconds,
            max_connections=settings.asset_api_max_connections,
        ),
        policy=RetryPolicy(
            max_attempts=settings.asset_api_max_attempts,
            deadline_seconds=policy.outage.budget_seconds,
            attempt_timeout_seconds=settings.asset_api_timeout_seconds,
        ),
        breaker=Breaker(
            "asset-api",
            is_failure=is_outage,
            fail_max=settings.asset_api_breaker_failures,
            reset_timeout_seconds=settings.asset_api_breaker_reset_seconds,
        ),
    )


def _iot_hubs(settings: AppSettings, policy: Policy, connections: HubConnections) -> IotHubRegistry:
    from iothub_client.sdk_adapter import SdkIotHubRegistry
    from resilience.hub_breakers import BreakerGuardedIotHubRegistry
    from resilience.hub_rate_limit import RateLimitedIotHubRegistry

    hubs = [c.hub for c in connections.values()]
    return RateLimitedIotHubRegistry(
        BreakerGuardedIotHubRegistry(
            SdkIotHubRegistry(
                connections,
                timeout_seconds=settings.iot_hub_timeout_seconds,
                ca_bundle=str(settings.iot_hub_ca_bundle) if settings.iot_hub_ca_bundle else None,
                credential_factory=lambda: _token_credential(settings),
            ),
            hubs=hubs,
            fail_max=settings.iot_hub_breaker_failures,
            reset_timeout_seconds=settings.iot_hub_breaker_reset_seconds,
        ),
        hubs=hubs,
        twin_updates_per_second=settings.iot_hub_twin_updates_per_second,
        registry_ops_per_minute=policy.replacement.registry_ops_per_minute,
    )


@dataclass(frozen=True)
class _StorageAdapters:
    outbox: Outbox
    backlog_sources: tuple[BacklogSource, ...]
    audit_trail: AuditTrail
    audit_writer: AuditWriter
    closers: tuple[Any, ...]


def _storage_adapters(settings: AppSettings) -> _StorageAdapters:
    """The queues, the audit trail and its table, all on one account and one credential."""
    from audit.queue import AuditQueue
    from audit.table_access import AuditTable
    from audit.table_writer import AuditTableWriter
    from audit.trail import QueuedAuditTrail
    from resilience.durable_queue import StorageQueue
    from storage_access.clients import StorageClients, validate_connection_string

    try:
        validate_connection_string(settings.storage)
    except StorageConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    storage = StorageClients(
        settings.storage,
        connection_verify=str(settings.storage_ca_bundle) if settings.storage_ca_bundle else True,
    )
    encoding = settings.queue_message_encoding
    queue = StorageQueue(storage, settings.reconciliation_queue, encoding=encoding)
    dead_letter_queue = StorageQueue(storage, settings.dead_letter_queue, encoding=encoding)
    audit_queue = AuditQueue(storage, settings.audit_queue, encoding=encoding)
    # Group commit: each flow waits until its entries are on the queue (or the queue is
    # found down), so an entry never lives only in a worker that may be recycled.
    audit_trail = QueuedAuditTrail(audit_queue, wait_until_queued=True, flush_interval_seconds=0)
    try:
        audit_table = AuditTable(storage, settings.audit_table)
    except ValueError as exc:
        raise ConfigurationError(f"AzureWebJobsStorage / AUDIT_TABLE: {redact(str(exc))}") from None
    return _StorageAdapters(
        outbox=Outbox(reconciliation=queue, dead_letters=dead_letter_queue, audit=audit_trail),
        backlog_sources=(queue, dead_letter_queue),
        audit_trail=audit_trail,
        audit_writer=AuditWriter(AuditTableWriter(audit_table), audit_queue),
        # The trail first: it flushes its backlog to the audit queue before that closes.
        closers=(audit_trail, queue, dead_letter_queue, audit_queue, audit_table, storage),
    )


def _circuit_breakers(assets: AssetRepository, hubs: IotHubRegistry) -> tuple[Breaker, ...]:
    """Found in the wrappers that _asset_repository and _iot_hubs put around the adapters."""
    from resilience.hub_breakers import BreakerGuardedIotHubRegistry
    from resilience.hub_rate_limit import RateLimitedIotHubRegistry
    from resilience.resilient_assets import ResilientAssetRepository

    found: list[Breaker] = []
    if isinstance(assets, ResilientAssetRepository):
        found.append(assets.breaker)
    if isinstance(hubs, RateLimitedIotHubRegistry):
        hubs = hubs.inner
    if isinstance(hubs, BreakerGuardedIotHubRegistry):
        found.extend(hubs.breakers())
    return tuple(found)


def services() -> Services:
    """The worker's services; their HTTP clients are created once and reused."""
    global _services
    if _services is None:
        _services = build_services(*load_configuration())
    return _services


__all__ = [
    "ConfigurationError",
    "Services",
    "build_services",
    "load_configuration",
    "services",
    "start_telemetry",
]
