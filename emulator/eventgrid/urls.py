"""Admin routes of the emulated Event Grid (no ARM surface: the topic is the subscription's system topic)."""

from __future__ import annotations

from emulator.core.router import Route
from emulator.eventgrid import responses as r


def routes() -> list[Route]:
    return [
        Route("GET", "/_emulator/events", r.list_events, kind="none", auth=False),
        Route("DELETE", "/_emulator/events", r.clear_events, kind="none", auth=False),
        Route("GET", "/_emulator/eventgrid", r.get_settings, kind="none", auth=False),
        Route("PUT", "/_emulator/eventgrid", r.put_settings, kind="none", auth=False),
    ]
