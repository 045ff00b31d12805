"""Reference asset-management service for devstack: the asset API v1 over SQLite.

It stands in for the enterprise asset system on a laptop; asset_client/openapi.yaml is its
contract, change events included (a SQLite outbox delivers them to Event Grid webhooks). Run
it with `python -m devstack.asset_service`, or build it in-process with create_app.
"""

from .app import create_app

__all__ = ["create_app"]
