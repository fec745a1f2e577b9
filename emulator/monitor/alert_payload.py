"""Common alert schema notifications of log search alerts (V2), after Microsoft's documented sample
("Sample payloads for log search alerts using webhook actions", API version 2021-08-01 and later).

Differences from the real payload, on purpose: the links point at this emulator's query API (so a
test can follow `linkToSearchResultsAPI`), and the portal links carry the query URL-encoded rather
than gzip+base64 (nothing can open them anyway).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from emulator.monitor.timespans import Window, format_duration, iso_z, iso_z_precise

if TYPE_CHECKING:
    from emulator.monitor.alerts import AlertRule

FIRED = "Fired"
RESOLVED = "Resolved"


@dataclass(frozen=True)
class AlertInstance:
    """One firing of a rule for one combination of dimension values, until it resolves."""

    alert_guid: str
    origin_alert_id: str
    fired_at: datetime


def build_payload(
    rule: AlertRule,
    dimensions: list[tuple[str, str]],
    metric_value: float | None,
    instance: AlertInstance,
    condition: str,
    window: Window,
    endpoint: str,
    now: datetime,
) -> dict[str, Any]:
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{rule.workspace.subscription_id}/providers/Microsoft.AlertsManagement"
        f"/alerts/{instance.alert_guid}",
        "alertRule": rule.name,
        "severity": f"Sev{rule.severity}",
        "signalType": "Log",
        "monitorCondition": condition,
        "monitoringService": "Log Alerts V2",
        "alertTargetIDs": [rule.workspace.resource_id.lower()],
        "configurationItems": [value for _, value in dimensions] or [rule.workspace.name],
        "originAlertId": instance.origin_alert_id,
        "firedDateTime": iso_z_precise(instance.fired_at),
        "description": rule.description,
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == RESOLVED:
        essentials["resolvedDateTime"] = iso_z_precise(now)
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": rule.properties,
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": format_duration(rule.window_s),
                    "allOf": [_criterion(rule, dimensions, metric_value, window, endpoint)],
                    "windowStartTime": iso_z(window[0]),
                    "windowEndTime": iso_z(window[1]),
                },
            },
        },
    }


def _criterion(
    rule: AlertRule,
    dimensions: list[tuple[str, str]],
    metric_value: float | None,
    window: Window,
    endpoint: str,
) -> dict[str, Any]:
    filtered = rule.query + "".join(f"\n| where {name} == {json.dumps(value)}" for name, value in dimensions)
    return {
        "searchQuery": rule.query,
        "metricMeasureColumn": rule.metric_column,
        "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
        "operator": rule.operator,
        "threshold": _number_text(rule.threshold),
        "timeAggregation": rule.time_aggregation,
        "dimensions": [{"name": name, "value": value} for name, value in dimensions],
        "metricValue": metric_value,
        "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
        "linkToSearchResultsUI": _portal_link(rule, rule.query, window),
        "linkToFilteredSearchResultsUI": _portal_link(rule, filtered, window),
        "linkToSearchResultsAPI": _api_link(rule, rule.query, window, endpoint),
        "linkToFilteredSearchResultsAPI": _api_link(rule, filtered, window, endpoint),
    }


def _timespan(window: Window) -> str:
    return f"{iso_z(window[0])}/{iso_z(window[1])}"


def _api_link(rule: AlertRule, query: str, window: Window, endpoint: str) -> str:
    return (
        f"{endpoint}/v1/workspaces/{rule.workspace.customer_id}/query"
        f"?query={quote(query, safe='')}&timespan={quote(_timespan(window), safe='')}"
    )


def _portal_link(rule: AlertRule, query: str, window: Window) -> str:
    scope = json.dumps({"resources": [{"resourceId": rule.workspace.resource_id}]}, separators=(",", ":"))
    return (
        "https://portal.azure.com#@/blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/source/Alerts.EmailLinks"
        f"/scope/{quote(scope, safe='')}/q/{quote(query, safe='')}/prettify/1"
        f"/timespan/{quote(_timespan(window), safe='')}"
    )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
