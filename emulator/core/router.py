"""Route templates to handlers, matched case-insensitively as ARM does."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.core.errors import MethodNotAllowed, RouteNotFound

if TYPE_CHECKING:
    from emulator.core.app import Call, Reply

Handler = Callable[["Call"], "Reply"]
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One served operation.

    `template` uses `{name}` for path segments; `api_versions` empty means the route
    takes no `api-version` (data-plane routes such as the Log Analytics query API).
    `kind` is "read" or "write" for ARM's per-subscription token buckets, or
    "none" for routes outside ARM's throttling.
    """

    method: str
    template: str
    handler: Handler
    api_versions: frozenset[str] = frozenset()
    kind: str = "read"
    auth: bool = True
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", self.template.rstrip("/"))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}/?$", re.IGNORECASE))


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        self.routes.append(route)

    def extend(self, routes: list[Route]) -> None:
        self.routes.extend(routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        allowed: list[str] = []
        for route in self.routes:
            found = route.pattern.match(path)
            if not found:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(method, path, allowed)
        raise RouteNotFound(method, path)
