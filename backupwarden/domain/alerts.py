"""Alert notifications (Azure Monitor common alert schema) reduced to what remediation needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backupwarden.domain.times import parse_time

COMMON_SCHEMA = "azureMonitorCommonAlertSchema"
LOG_ALERTS = "Log Alerts V2"
AZURE_BACKUP = "Azure Backup"
SUPPORTED_SERVICES = (LOG_ALERTS, AZURE_BACKUP)
MAX_DIMENSION_VALUE = 2048


class InvalidAlert(ValueError):
    """Not an alert this webhook handles; the message says precisely why (answered with 400)."""


@dataclass(frozen=True)
class AlertNotice:
    alert_id: str
    rule: str
    monitor_condition: str  # Fired or Resolved
    monitoring_service: str
    fired_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    dimensions: tuple[tuple[str, str], ...] = ()
    target_ids: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def dedup_key(self) -> str:
        return f"{self.alert_id}|{self.monitor_condition}"

    def dimension(self, name: str) -> str | None:
        return next((value for key, value in self.dimensions if key.lower() == name.lower()), None)


def read_alert(payload: Any) -> AlertNotice:
    if not isinstance(payload, dict):
        raise InvalidAlert("the body must be a JSON object in the common alert schema")
    if payload.get("schemaId") != COMMON_SCHEMA:
        raise InvalidAlert(f"schemaId must be '{COMMON_SCHEMA}', not {str(payload.get('schemaId'))[:100]!r}")
    data = _object(payload, "data", "$")
    essentials = _object(data, "essentials", "data")
    service = _text(essentials, "monitoringService", "data.essentials")
    if service not in SUPPORTED_SERVICES:
        raise InvalidAlert(
            f"data.essentials.monitoringService {service[:100]!r} is not one of {list(SUPPORTED_SERVICES)}"
        )
    condition = _text(essentials, "monitorCondition", "data.essentials")
    if condition not in ("Fired", "Resolved"):
        raise InvalidAlert(
            f"data.essentials.monitorCondition must be Fired or Resolved, not {condition[:50]!r}"
        )
    context = data.get("alertContext") or {}
    if not isinstance(context, dict):
        raise InvalidAlert("data.alertContext must be an object")
    targets = essentials.get("alertTargetIDs") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InvalidAlert("data.essentials.alertTargetIDs must be a list of strings")
    window_start, window_end, dimensions = (
        _log_condition(context) if service == LOG_ALERTS else (None, None, ())
    )
    return AlertNotice(
        alert_id=_text(essentials, "alertId", "data.essentials"),
        rule=_text(essentials, "alertRule", "data.essentials"),
        monitor_condition=condition,
        monitoring_service=service,
        fired_at=_time(essentials.get("firedDateTime"), "data.essentials.firedDateTime"),
        window_start=window_start,
        window_end=window_end,
        dimensions=dimensions,
        target_ids=tuple(targets),
        context=context,
    )


def _log_condition(
    context: dict[str, Any],
) -> tuple[datetime | None, datetime | None, tuple[tuple[str, str], ...]]:
    condition = context.get("condition") or {}
    if not isinstance(condition, dict):
        raise InvalidAlert("data.alertContext.condition must be an object")
    start = _optional_time(condition.get("windowStartTime"), "data.alertContext.condition.windowStartTime")
    end = _optional_time(condition.get("windowEndTime"), "data.alertContext.condition.windowEndTime")
    all_of = condition.get("allOf") or []
    if not isinstance(all_of, list):
        raise InvalidAlert("data.alertContext.condition.allOf must be a list")
    dimensions: list[tuple[str, str]] = []
    for index, criterion in enumerate(all_of):
        if not isinstance(criterion, dict):
            raise InvalidAlert(f"data.alertContext.condition.allOf[{index}] must be an object")
        entries = criterion.get("dimensions") or []
        if not isinstance(entries, list):
            raise InvalidAlert(f"data.alertContext.condition.allOf[{index}].dimensions must be a list")
        for entry in entries:
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("name"), str)
                or not isinstance(entry.get("value"), str)
            ):
                raise InvalidAlert(
                    f"data.alertContext.condition.allOf[{index}].dimensions: each needs string name and value"
                )
            if len(entry["value"]) > MAX_DIMENSION_VALUE:
                raise InvalidAlert(
                    f"dimension {entry['name'][:50]!r} is longer than {MAX_DIMENSION_VALUE} characters"
                )
            dimensions.append((entry["name"], entry["value"]))
    return start, end, tuple(dimensions)


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise InvalidAlert(f"{where}.{key} must be an object")
    return value


def _text(parent: dict[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidAlert(f"{where}.{key} must be a non-empty string")
    return value


def _optional_time(raw: Any, where: str) -> datetime | None:
    return None if raw in (None, "") else _time(raw, where)


def _time(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str):
        raise InvalidAlert(f"{where} must be an ISO-8601 time")
    try:
        return parse_time(raw)
    except ValueError:
        raise InvalidAlert(f"{where} is not an ISO-8601 time: {raw[:60]!r}") from None
