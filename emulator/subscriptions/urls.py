"""Routes of the subscriptions API (Microsoft.Resources)."""

from __future__ import annotations

from emulator.core.router import Route
from emulator.subscriptions import responses as r

# azure-mgmt-resource-subscriptions 1.0.0 sends 2022-12-01; older clients and `az` send the others.
API_VERSIONS = frozenset(
    {"2016-06-01", "2018-06-01", "2019-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"}
)


def routes() -> list[Route]:
    return [
        # A tenant-level call: no subscription bucket to take a token from.
        Route("GET", "/subscriptions", r.list_subscriptions, API_VERSIONS, kind="none"),
        Route("GET", "/subscriptions/{subscriptionId}", r.get_subscription, API_VERSIONS, kind="read"),
    ]
