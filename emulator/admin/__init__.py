"""Introspection and control of the emulator under /_emulator/ (no auth, no api-version)."""

from emulator.admin.urls import routes
from emulator.core.app import Service

SERVICE = Service(name="admin", routes=routes)
