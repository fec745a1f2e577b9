"""Emulated Azure Monitor: Logs Ingestion API, Log Analytics query API, log search alerts.

Routes in urls.py, handlers in responses.py, state and rules in models.py (alert evaluation in
alerts.py, webhook delivery in webhooks.py).
"""

from emulator.core.app import Service
from emulator.monitor.models import MonitorBackend
from emulator.monitor.urls import routes

SERVICE = Service(name="monitor", routes=routes, backend=MonitorBackend)
