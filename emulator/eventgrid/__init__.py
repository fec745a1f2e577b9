"""Emulated service: eventgrid (routes in urls.py, handlers in responses.py, rules in models.py)."""

from emulator.core.app import Service
from emulator.eventgrid.models import EventGridBackend
from emulator.eventgrid.urls import routes

SERVICE = Service(name="eventgrid", routes=routes, backend=EventGridBackend)
