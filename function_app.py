"""Entry point the Functions host loads: the app and its blueprints, nothing else."""

import azure.functions as func

import bootstrap
from allocation.blueprint import allocation_blueprint
from audit.blueprint import audit_blueprint
from health.blueprint import health_blueprint
from observability import install_redaction
from reconciliation.blueprint import reconciliation_blueprint
from sync.blueprint import sync_blueprint

# The worker's log handlers exist by now: redact key material before anything logs.
install_redaction()
# Fail at start-up, naming the bad setting or policy key, rather than on the first device.
bootstrap.load_configuration()
# Before the first request: its span and the asset API's client spans need the provider, and the
# aiohttp instrumentation must be in place before the asset API's session is created.
bootstrap.start_telemetry()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
# Each blueprint reaches the services through the composition root, which is the only module
# that knows them all: no area imports bootstrap.
app.register_functions(allocation_blueprint(bootstrap.services))
app.register_functions(sync_blueprint(bootstrap.services))
app.register_functions(reconciliation_blueprint(bootstrap.services))
app.register_functions(audit_blueprint(bootstrap.services))
app.register_functions(health_blueprint(bootstrap.services))
