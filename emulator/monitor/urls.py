"""Routes of the Logs Ingestion API, the Log Analytics query API and the alert admin endpoints."""

from __future__ import annotations

from emulator.core.router import Route
from emulator.monitor import responses

# 2023-01-01 is azure-monitor-ingestion's default; the preview is what older clients send.
INGESTION_API_VERSIONS = frozenset({"2023-01-01", "2021-11-01-preview"})


def routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/dataCollectionRules/{ruleId}/streams/{stream}",
            responses.upload,
            api_versions=INGESTION_API_VERSIONS,
            kind="none",
        ),
        # The query API is versioned by its path (/v1), not by api-version.
        Route("POST", "/v1/workspaces/{workspaceId}/query", responses.query_post, kind="none"),
        Route("GET", "/v1/workspaces/{workspaceId}/query", responses.query_get, kind="none"),
        Route("GET", "/_emulator/alerts", responses.list_alerts, kind="none", auth=False),
        Route("POST", "/_emulator/alerts/evaluate", responses.evaluate_alerts, kind="none", auth=False),
        Route("GET", "/_emulator/monitor/rules", responses.list_rules, kind="none", auth=False),
        Route("POST", "/_emulator/monitor/rules", responses.add_rule, kind="none", auth=False),
    ]
