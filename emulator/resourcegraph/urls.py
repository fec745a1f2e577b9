"""Resource Graph's routes."""

from __future__ import annotations

from emulator.core.router import Route
from emulator.resourcegraph.responses import query_resources

# Stable versions of the `resources` operation: 2021-03-01 is what azure-mgmt-resourcegraph 8.x
# sends, 2022-10-01 the spec in the reference folder, 2024-04-01 the newest.
API_VERSIONS = frozenset({"2019-04-01", "2021-03-01", "2022-10-01", "2024-04-01"})


def routes() -> list[Route]:
    # Resource Graph has its own per-user quota (models.py), outside ARM's subscription buckets.
    return [
        Route(
            "POST",
            "/providers/Microsoft.ResourceGraph/resources",
            query_resources,
            api_versions=API_VERSIONS,
            kind="none",
        ),
    ]
