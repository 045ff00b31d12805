"""Entry point the Functions host loads: the app and its blueprints, nothing else."""

import azure.functions as func

import bootstrap
from allocation.blueprint import blueprint as allocation_blueprint
from audit.blueprint import blueprint as audit_blueprint
from observability import install_redaction
from reconciliation.blueprint import blueprint as reconciliation_blueprint
from sync.blueprint import blueprint as sync_blueprint

# The worker's log handlers exist by now: redact key material before anything logs.
install_redaction()
# Fail at start-up, naming the bad setting or policy key, rather than on the first device.
bootstrap.load_configuration()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(allocation_blueprint)
app.register_functions(sync_blueprint)
app.register_functions(reconciliation_blueprint)
app.register_functions(audit_blueprint)
