"""The message `alert_webhook` puts on the remediation queue: what a fired alert says remediation needs.

One item per fired alert notification. The webhook may enqueue the same alert twice (a concurrent
retry of the action group, or a crash between enqueue and bookkeeping); that is harmless because
remediation acts on a VM only through the ledger, which allows one action per (VM, action, day).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backupwarden.domain.alerts import AlertNotice
from backupwarden.domain.times import iso_z, parse_time

FIELDS = (
    "alert_id",
    "rule",
    "monitoring_service",
    "fired_at",
    "window_start",
    "window_end",
    "dimensions",
    "target_ids",
)


class InvalidRemediationWorkItem(ValueError):
    """A queue message that is not a remediation work item: reported, never retried."""


@dataclass(frozen=True)
class RemediationWorkItem:
    alert_id: str
    rule: str
    monitoring_service: str  # "Log Alerts V2" or "Azure Backup"
    fired_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    dimensions: tuple[tuple[str, str], ...] = ()  # in the alert's order, e.g. (("VmId", …), ("ErrorCode", …))
    target_ids: tuple[str, ...] = ()

    @classmethod
    def from_notice(cls, notice: AlertNotice) -> RemediationWorkItem:
        return cls(**{name: getattr(notice, name) for name in FIELDS})

    def notice(self) -> AlertNotice:
        """The fired alert this item stands for, as remediation reads it."""
        return AlertNotice(monitor_condition="Fired", **{name: getattr(self, name) for name in FIELDS})

    def dimension(self, name: str) -> str | None:
        """The first value of a dimension, by case-insensitive name."""
        return next((value for key, value in self.dimensions if key.lower() == name.lower()), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "alert_id": self.alert_id,
                "rule": self.rule,
                "monitoring_service": self.monitoring_service,
                "fired_at": iso_z(self.fired_at),
                "window_start": iso_z(self.window_start) if self.window_start else None,
                "window_end": iso_z(self.window_end) if self.window_end else None,
                "dimensions": [{"name": name, "value": value} for name, value in self.dimensions],
                "target_ids": list(self.target_ids),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RemediationWorkItem:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidRemediationWorkItem(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidRemediationWorkItem("a remediation work item must be a JSON object")
        missing = [name for name in FIELDS if name not in raw]
        if missing:
            raise InvalidRemediationWorkItem(f"missing fields: {', '.join(missing)}")
        return cls(
            alert_id=_text(raw, "alert_id"),
            rule=_text(raw, "rule"),
            monitoring_service=_text(raw, "monitoring_service"),
            fired_at=_time(raw["fired_at"], "fired_at"),
            window_start=None if raw["window_start"] is None else _time(raw["window_start"], "window_start"),
            window_end=None if raw["window_end"] is None else _time(raw["window_end"], "window_end"),
            dimensions=_dimensions(raw["dimensions"]),
            target_ids=_strings(raw["target_ids"], "target_ids"),
        )


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidRemediationWorkItem(f"{name} must be a non-empty string")
    return value


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidRemediationWorkItem(f"{name} must be an ISO-8601 time")
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidRemediationWorkItem(f"{name} is not an ISO-8601 time: {value[:60]!r}") from None


def _dimensions(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise InvalidRemediationWorkItem("dimensions must be a list of {name, value}")
    pairs = []
    for entry in value:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("value"), str)
        ):
            raise InvalidRemediationWorkItem("dimensions: each needs a string name and value")
        pairs.append((entry["name"], entry["value"]))
    return tuple(pairs)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRemediationWorkItem(f"{name} must be a list of strings")
    return tuple(value)
