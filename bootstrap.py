"""The composition root: settings -> adapters -> services, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass

from allocation.policy import Policy, PolicyError, load_policy
from allocation.service import AllocationService
from asset_client import AssetRepository
from settings import AppSettings, ConfigurationError, load_settings


@dataclass(frozen=True)
class Services:
    settings: AppSettings
    policy: Policy
    assets: AssetRepository
    allocation: AllocationService

    async def aclose(self) -> None:
        await self.assets.aclose()


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
        _configuration = (settings, policy)
    return _configuration


def build_services(settings: AppSettings, policy: Policy) -> Services:
    # Imported here so that importing function_app (cold start) does not pay for httpx.
    from asset_client.http_adapter import HttpAssetRepository

    assets = HttpAssetRepository(
        str(settings.asset_api_url),
        api_key=settings.asset_api_key.get_secret_value() if settings.asset_api_key else None,
        timeout_seconds=settings.asset_api_timeout_seconds,
        max_connections=settings.asset_api_max_connections,
    )
    allocation = AllocationService(
        assets=assets, policy=policy, asset_api_public_url=settings.public_asset_url
    )
    return Services(settings=settings, policy=policy, assets=assets, allocation=allocation)


def services() -> Services:
    """The worker's services; the httpx client inside is created once and reused."""
    global _services
    if _services is None:
        _services = build_services(*load_configuration())
    return _services


__all__ = ["ConfigurationError", "Services", "build_services", "load_configuration", "services"]
