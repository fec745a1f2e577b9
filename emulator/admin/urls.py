from __future__ import annotations

from emulator.admin import responses as r
from emulator.core.router import Route


def _admin(method: str, template: str, handler: r.Handler) -> Route:
    return Route(method, template, handler, kind="none", auth=False)


def routes() -> list[Route]:
    return [
        _admin("POST", "/_emulator/reset", r.reset),
        _admin("PUT", "/_emulator/scenario", r.load_scenario),
        _admin("PUT", "/_emulator/profile", r.apply_profile),
        _admin("GET", "/_emulator/clock", r.get_clock),
        _admin("POST", "/_emulator/clock/advance", r.advance_clock),
        _admin("GET", "/_emulator/faults", r.get_faults),
        _admin("PUT", "/_emulator/faults", r.set_faults),
        _admin("DELETE", "/_emulator/faults", r.clear_faults),
        _admin("PUT", "/_emulator/throttle", r.set_throttle),
        _admin("PUT", "/_emulator/latency", r.set_latency),
        _admin("GET", "/_emulator/requests", r.get_requests),
        _admin("DELETE", "/_emulator/requests", r.clear_requests),
    ]
