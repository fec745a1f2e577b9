"""The app's logging, and how its structured fields reach Application Insights.

Every decision is logged with its fields in `extra=` (vm_id, result, reason, alert_id, ...). Without
OpenTelemetry the Python worker forwards a record to the Functions host as message, level and category
only (azure_functions_worker/dispatcher.py, `on_logging`), so those fields never leave the process.

The deployment turns on the documented OpenTelemetry path instead (docs/deploy.md, "Telemetry"):
host.json `"telemetryMode": "OpenTelemetry"` and the app setting
`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (infra/app/function-app.bicep). With that setting
the worker itself calls azure-monitor-opentelemetry's `configure_azure_monitor()` with the
APPLICATIONINSIGHTS_CONNECTION_STRING app setting, puts an OpenTelemetry `LoggingHandler` on the root
logger (PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME, default ""), stops piping logs to the host (no
duplicates), and attaches the invocation's trace context (the host's traceparent) before it calls a
function. The handler turns each `extra=` field into a log record attribute, which the Azure Monitor
exporter writes as a custom dimension of the trace row, with the invocation's operation id.

So the app configures no exporter itself: where no connection string and no worker setting exist
(locally, in the tests) nothing is exported. What the app owns is that its records reach the root
logger at the right levels, which `configure_logging` sets.
"""

from __future__ import annotations

import logging

# The app's records at INFO. The Azure SDKs log every request at INFO, which would drown them; at
# WARNING that also keeps the Azure Monitor exporter's own INFO records out of the telemetry it sends.
LOG_LEVELS = {
    "backupwarden": logging.INFO,
    "functions": logging.INFO,
    "azure": logging.WARNING,
}


def configure_logging() -> None:
    """Levels only: the worker owns the handlers (gRPC to the host, or OpenTelemetry)."""
    for name, level in LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
