"""Emulated service: subscriptions (routes in urls.py, handlers in responses.py, rules in models.py)."""

from emulator.core.app import Service
from emulator.subscriptions.models import SubscriptionsBackend
from emulator.subscriptions.urls import routes

SERVICE = Service(name="subscriptions", routes=routes, backend=SubscriptionsBackend)
