"""Emulated service: recoveryservices (routes in urls.py, handlers in responses.py, rules in models.py)."""

from emulator.core.app import Service
from emulator.recoveryservices.models import RecoveryServicesBackend
from emulator.recoveryservices.urls import routes

SERVICE = Service(name="recoveryservices", routes=routes, backend=RecoveryServicesBackend)
