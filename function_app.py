"""Azure Functions entry point: configures logging and registers the blueprints of `functions/`."""

from __future__ import annotations

import azure.functions as func

from functions.alerts import bp as alerts_bp
from functions.new_vms import bp as new_vms_bp
from functions.outcomes import bp as outcomes_bp
from functions.reconcile import bp as reconcile_bp
from functions.remediation import bp as remediation_bp
from functions.sweep import bp as sweep_bp
from functions.telemetry import configure_logging

# Log levels only: the worker exports the records with their fields (functions/telemetry.py).
configure_logging()

app = func.FunctionApp()
app.register_functions(sweep_bp)
app.register_functions(new_vms_bp)
app.register_functions(outcomes_bp)
app.register_functions(alerts_bp)
app.register_functions(remediation_bp)
app.register_functions(reconcile_bp)
