"""Emulated service: Azure Policy's checkPolicyRestrictions (routes: urls.py, handlers: responses.py,
rules: models.py)."""

from emulator.core.app import Service
from emulator.policyinsights.models import PolicyInsightsBackend
from emulator.policyinsights.urls import routes

SERVICE = Service(name="policyinsights", routes=routes, backend=PolicyInsightsBackend)
