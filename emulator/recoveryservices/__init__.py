"""Emulated service: recoveryservices (routes in urls.py, handlers in responses.py, rules in models.py)."""

from emulator.core.app import Service

SERVICE = Service(name="recoveryservices", routes=lambda: [])
