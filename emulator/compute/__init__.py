"""Emulated service: compute (routes in urls.py, handlers in responses.py, rules in models.py)."""

from emulator.compute.models import ComputeBackend
from emulator.compute.urls import routes
from emulator.core.app import Service

SERVICE = Service(name="compute", routes=routes, backend=ComputeBackend)
