"""Run the emulator: mutual TLS on one loopback port, groups, store, webhook client, hubs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from devstack.dps_emulator.app import ApiSettings, create_app
from devstack.dps_emulator.certificate_info import X509Shape
from devstack.dps_emulator.enrollment_groups import EnrollmentGroup, groups_directory
from devstack.dps_emulator.errors import StartupError
from devstack.dps_emulator.group_catalog import GroupCatalog
from devstack.dps_emulator.hubs import HubDirectory, load_hubs_file
from devstack.dps_emulator.registration import RegistrationService
from devstack.dps_emulator.service_api import create_service_app
from devstack.dps_emulator.service_auth import OWNER_POLICY, SasPolicies
from devstack.dps_emulator.store import DATABASE_FILE, RegistrationStore
from devstack.dps_emulator.webhook import WebhookCaller
from devstack.serving import bind_socket, write_ready_file
from devstack.tls import ensure_tls

logger = logging.getLogger("devstack.dps_emulator")

DEFAULT_ID_SCOPE = "0ne00DEV5TK"
DEFAULT_PORT = 9443
SERVICE_KEYS_FILE = "service-policies.json"


@dataclass(frozen=True)
class EmulatorOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    id_scope: str = DEFAULT_ID_SCOPE
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hubs_file: Path | None = None
    ca_bundle: Path | None = None
    retry_scale: float = 1.0
    webhook_timeout: float = 10.0
    x509_shape: X509Shape = X509Shape.CLIENT_CERTIFICATE
    poll_seconds: float = 1.0
    ready_file: Path | None = None
    service_port: int = 0
    """The service API's port (enrollment groups, registration records); 0 picks a free one."""


@dataclass(frozen=True)
class _Tls:
    server_cert: Path
    server_key: Path
    ca_bundle: Path


def _resolve_tls(options: EmulatorOptions) -> _Tls:
    if (options.tls_cert is None) != (options.tls_key is None):
        raise StartupError("--tls-cert and --tls-key go together")
    devstack = None
    if options.tls_cert is None or options.ca_bundle is None:
        devstack = ensure_tls(options.data_dir)
    cert = options.tls_cert or (devstack.server_cert if devstack else None)
    key = options.tls_key or (devstack.server_key if devstack else None)
    bundle = options.ca_bundle or (devstack.ca_cert if devstack else None)
    if cert is None or key is None or bundle is None:
        raise StartupError("no TLS material")
    for path, option in ((cert, "--tls-cert"), (key, "--tls-key"), (bundle, "--ca-bundle")):
        if not path.is_file():
            raise StartupError(f"{option}: {path} does not exist")
    return _Tls(cert, key, bundle)


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Client certificates required; a group's CA may be an intermediate (partial chains)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the TLS server certificate {cert}: {exc}") from exc
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def service_policies(data_dir: Path, host_name: str) -> SasPolicies:
    """The owner policy's key, made on first start and kept: a restart keeps its tokens valid."""
    path = data_dir / SERVICE_KEYS_FILE
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):
        keys = None
    if not (isinstance(keys, dict) and isinstance(keys.get(OWNER_POLICY), str)):
        keys = {OWNER_POLICY: base64.b64encode(os.urandom(32)).decode()}
        path.write_text(json.dumps(keys))
        path.chmod(0o600)
    return SasPolicies(host_name=host_name, keys=keys)


def service_description(policies: SasPolicies) -> dict[str, str]:
    key = policies.keys[OWNER_POLICY]
    return {
        "serviceUrl": f"https://{policies.host_name}",
        "serviceHostName": policies.host_name,
        "servicePort": policies.host_name.rsplit(":", 1)[1],
        "serviceConnectionString": (
            f"HostName={policies.host_name};SharedAccessKeyName={OWNER_POLICY};"
            f"SharedAccessKey={key}"
        ),
    }


def ready_info(
    options: EmulatorOptions, port: int, groups: list[EnrollmentGroup], tls: _Tls
) -> dict[str, Any]:
    data_dir = options.data_dir.resolve()
    entries = []
    for group in groups:
        entry: dict[str, Any] = {"id": group.group_id, "record": str(group.path.resolve())}
        ca_dir = groups_directory(options.data_dir) / group.group_id
        if (ca_dir / "ca.pem").is_file():
            entry["caCert"] = str((ca_dir / "ca.pem").resolve())
        key = (ca_dir / "ca.key.pem").resolve()
        if key.is_file() and key.is_relative_to(data_dir):
            entry["caKey"] = str(key)
        entries.append(entry)
    return {
        "url": f"https://{options.host}:{port}",
        "host": options.host,
        "port": port,
        "pid": os.getpid(),
        "idScope": options.id_scope,
        "tlsCaCert": str(tls.ca_bundle.resolve()),
        "enrollmentGroups": entries,
        "enrollmentGroupsDir": str(groups_directory(options.data_dir).resolve()),
    }


async def run(options: EmulatorOptions) -> None:
    """Serve until SIGINT/SIGTERM."""
    options.data_dir.mkdir(parents=True, exist_ok=True)
    tls = _resolve_tls(options)
    catalog = GroupCatalog(groups_directory(options.data_dir))
    if not catalog.groups:
        logger.warning(
            "no enrollment groups in %s: every device will be refused",
            groups_directory(options.data_dir),
        )
    hubs = (
        HubDirectory(load_hubs_file(options.hubs_file), tls.ca_bundle)
        if options.hubs_file
        else None
    )
    if hubs is None:
        logger.warning("no --hubs-file: devices are assigned but no hub identities are created")
    server_context = server_ssl_context(tls.server_cert, tls.server_key)
    catalog.trust_in(server_context)
    client_context = ssl.create_default_context(cafile=str(tls.ca_bundle))
    store = RegistrationStore(options.data_dir / DATABASE_FILE)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context, limit=200))
    service = RegistrationService(
        store=store,
        webhook=WebhookCaller(
            session, timeout=options.webhook_timeout, retry_scale=options.retry_scale
        ),
        hubs=hubs,
        x509_shape=options.x509_shape,
    )
    app = create_app(
        service=service,
        catalog=catalog,
        settings=ApiSettings(id_scope=options.id_scope, poll_seconds=options.poll_seconds),
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    service_runner: web.AppRunner | None = None
    try:
        await runner.setup()
        sock = bind_socket(options.host, options.port)
        port = sock.getsockname()[1]
        await web.SockSite(runner, sock, ssl_context=server_context).start()
        service_sock = bind_socket(options.host, options.service_port)
        policies = service_policies(
            options.data_dir, f"{options.host}:{service_sock.getsockname()[1]}"
        )
        service_runner = web.AppRunner(
            create_service_app(catalog=catalog, store=store, policies=policies),
            access_log=None,
            handle_signals=False,
        )
        await service_runner.setup()
        service_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        service_context.load_cert_chain(tls.server_cert, tls.server_key)
        await web.SockSite(service_runner, service_sock, ssl_context=service_context).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "DPS emulator on https://%s:%d (service API https://%s), ID scope %s, groups: %s",
            options.host,
            port,
            policies.host_name,
            options.id_scope,
            ", ".join(g.group_id for g in catalog.groups) or "none",
        )
        if options.ready_file is not None:
            write_ready_file(
                options.ready_file,
                ready_info(options, port, catalog.groups, tls) | service_description(policies),
            )
        await stop.wait()
    finally:
        await service.close()
        if service_runner is not None:
            await service_runner.cleanup()
        await runner.cleanup()
        await session.close()
        store.close()
