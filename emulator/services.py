"""Every emulated service, in the order their routes are matched."""

from __future__ import annotations

from emulator.admin import SERVICE as ADMIN
from emulator.compute import SERVICE as COMPUTE
from emulator.core.app import Service
from emulator.eventgrid import SERVICE as EVENTGRID
from emulator.monitor import SERVICE as MONITOR
from emulator.policyinsights import SERVICE as POLICYINSIGHTS
from emulator.recoveryservices import SERVICE as RECOVERYSERVICES
from emulator.resourcegraph import SERVICE as RESOURCEGRAPH
from emulator.subscriptions import SERVICE as SUBSCRIPTIONS

SERVICES: list[Service] = [
    ADMIN,
    SUBSCRIPTIONS,
    COMPUTE,
    RECOVERYSERVICES,
    RESOURCEGRAPH,
    POLICYINSIGHTS,
    MONITOR,
    EVENTGRID,
]
