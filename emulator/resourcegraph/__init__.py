"""Emulated service: Azure Resource Graph (routes: urls.py, handlers: responses.py, rules: models.py)."""

from emulator.core.app import Service
from emulator.resourcegraph.models import ResourceGraphBackend
from emulator.resourcegraph.urls import routes

SERVICE = Service(name="resourcegraph", routes=routes, backend=ResourceGraphBackend)
