"""Log search alert rules (scheduledQueryRules) evaluated on the emulated clock.

Each rule runs every `frequency_s` (a timeline transition, so under `emulator.lock`): its query
over [now - window_s, now] on TimeGenerated, rows grouped by the dimension columns, each group's
measure (row count, or an aggregate of `metric_column`) compared with the threshold. A group that
crosses fires once ("Fired") and stays fired while it keeps crossing; when it stops crossing (or
its rows are gone) it resolves ("Resolved", same alertId). One evaluation period, one failing
period to alert, auto-mitigation on: the portal's defaults.
"""

from __future__ import annotations

import logging
import operator
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.monitor.alert_payload import FIRED, RESOLVED, AlertInstance, build_payload
from emulator.monitor.exceptions import LogAnalyticsError
from emulator.monitor.results import QueryResult
from emulator.monitor.timespans import Window

if TYPE_CHECKING:
    from emulator.monitor.entities import Workspace
    from emulator.monitor.models import MonitorBackend

logger = logging.getLogger(__name__)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqual": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqual": operator.le,
    "Equal": operator.eq,
}
_SYMBOLS = {
    ">": "GreaterThan",
    ">=": "GreaterThanOrEqual",
    "<": "LessThan",
    "<=": "LessThanOrEqual",
    "==": "Equal",
}
AGGREGATIONS = ("Count", "Sum", "Average", "Minimum", "Maximum")
RULE_KEYS = frozenset(
    {
        "name",
        "id",
        "workspace",
        "query",
        "frequency_s",
        "window_s",
        "threshold",
        "dimensions",
        "severity",
        "webhook_url",
        "metric_column",
        "time_aggregation",
        "description",
        "properties",
    }
)
_IDS = uuid.UUID("0b6c6f7e-3c1d-4d8e-a4f1-1f6a2f9b7c55")
GroupKey = tuple[str, ...]


@dataclass
class AlertRule:
    name: str
    rule_id: str
    workspace: Workspace
    query: str
    frequency_s: float
    window_s: float
    operator: str
    threshold: float
    dimensions: tuple[str, ...] = ()
    severity: int = 3
    webhook_url: str | None = None
    metric_column: str | None = None
    time_aggregation: str = "Count"
    description: str = ""
    properties: dict[str, Any] | None = None
    active: dict[GroupKey, AlertInstance] = field(default_factory=dict)
    last_evaluated_at: datetime | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.rule_id,
            "workspace": self.workspace.customer_id,
            "query": self.query,
            "frequency_s": self.frequency_s,
            "window_s": self.window_s,
            "threshold": {"operator": self.operator, "value": self.threshold},
            "dimensions": list(self.dimensions),
            "severity": self.severity,
            "webhook_url": self.webhook_url,
            "metric_column": self.metric_column,
            "time_aggregation": self.time_aggregation,
            "description": self.description,
            "properties": self.properties,
            "firing": [list(key) for key in self.active],
            "last_evaluated_at": self.last_evaluated_at.isoformat() if self.last_evaluated_at else None,
            "last_error": self.last_error,
        }


def parse_rule(spec: Mapping[str, Any], backend: MonitorBackend) -> AlertRule:
    """A rule from its scenario/admin form; ValueError says which key is wrong."""
    if not isinstance(spec, Mapping):
        raise ValueError("an alert rule must be a mapping")
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(RULE_KEYS)}")
    for required in ("name", "workspace", "query", "threshold"):
        if spec.get(required) in (None, ""):
            raise ValueError(f"'{required}' is required")
    name = str(spec["name"])
    workspace = backend.workspace(str(spec["workspace"]))
    frequency_s = _positive(spec.get("frequency_s", 300), "frequency_s")
    operator_name, threshold = _threshold(spec["threshold"])
    aggregation = str(spec.get("time_aggregation", "Count"))
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"time_aggregation '{aggregation}' is not one of {', '.join(AGGREGATIONS)}")
    if aggregation != "Count" and not spec.get("metric_column"):
        raise ValueError(f"time_aggregation '{aggregation}' needs a metric_column")
    return AlertRule(
        name=name,
        rule_id=str(spec.get("id") or _rule_id(workspace, name)),
        workspace=workspace,
        query=str(spec["query"]),
        frequency_s=frequency_s,
        window_s=_positive(spec.get("window_s", frequency_s), "window_s"),
        operator=operator_name,
        threshold=threshold,
        dimensions=tuple(str(d) for d in spec.get("dimensions") or ()),
        severity=_severity(spec.get("severity", 3)),
        webhook_url=spec.get("webhook_url"),
        metric_column=spec.get("metric_column"),
        time_aggregation=aggregation,
        description=str(spec.get("description", "")),
        properties=spec.get("properties"),
    )


class AlertEngine:
    def __init__(self, backend: MonitorBackend) -> None:
        self._backend = backend
        self.rules: dict[str, AlertRule] = {}  # by name, lower-case

    def add(self, spec: Mapping[str, Any]) -> AlertRule:
        rule = parse_rule(spec, self._backend)
        if rule.name.lower() in self.rules:
            raise ValueError(f"alert rule '{rule.name}' already exists")
        self.rules[rule.name.lower()] = rule
        self._schedule(rule, self._backend.emulator.now() + timedelta(seconds=rule.frequency_s))
        return rule

    def evaluate_all(self, now: datetime) -> list[dict[str, Any]]:
        payloads: list[dict[str, Any]] = []
        for rule in list(self.rules.values()):
            payloads.extend(self._evaluate_safely(rule, now))
        return payloads

    def _schedule(self, rule: AlertRule, due: datetime) -> None:
        def tick(at: datetime) -> None:
            if self.rules.get(rule.name.lower()) is not rule:
                return
            self._evaluate_safely(rule, at)
            self._schedule(rule, at + timedelta(seconds=rule.frequency_s))

        self._backend.emulator.timeline.at(due, tick)

    def _evaluate_safely(self, rule: AlertRule, now: datetime) -> list[dict[str, Any]]:
        # Evaluations run inside whatever request settles the clock: never let one fail that request.
        try:
            payloads = self.evaluate(rule, now)
        except Exception as exc:
            rule.last_error = exc.detail if isinstance(exc, LogAnalyticsError) else str(exc)
            logger.warning("alert rule %s failed to evaluate: %s", rule.name, rule.last_error)
            return []
        rule.last_error = None
        return payloads

    def evaluate(self, rule: AlertRule, now: datetime) -> list[dict[str, Any]]:
        window: Window = (now - timedelta(seconds=rule.window_s), now)
        result = self._backend.run_query([rule.workspace], rule.query, window, now)
        measures = measure_groups(result, rule)
        rule.last_evaluated_at = now
        payloads = []
        for key in sorted(measures.keys() | rule.active.keys()):
            value = measures.get(key, 0 if rule.time_aggregation == "Count" else None)
            crossing = value is not None and OPERATORS[rule.operator](value, rule.threshold)
            if crossing and key not in rule.active:
                rule.active[key] = _new_instance(rule, key, now)
                payloads.append(self._notify(rule, key, value, FIRED, window, now))
            elif not crossing and key in rule.active:
                payloads.append(self._notify(rule, key, value, RESOLVED, window, now))
                del rule.active[key]
        return payloads

    def _notify(
        self,
        rule: AlertRule,
        key: GroupKey,
        value: float | None,
        condition: str,
        window: Window,
        now: datetime,
    ) -> dict[str, Any]:
        dimensions = list(zip(rule.dimensions, key, strict=True))
        payload = build_payload(
            rule, dimensions, value, rule.active[key], condition, window, self._backend.query_endpoint, now
        )
        delivery = self._backend.settings.delivery
        self._backend.deliveries.add(payload, rule.webhook_url or delivery.webhook_url, delivery)
        return payload


def measure_groups(result: QueryResult, rule: AlertRule) -> dict[GroupKey, float | None]:
    """Each combination of dimension values -> its measure (no dimensions: one group, always present)."""
    positions = [_position(result, name, "dimension") for name in rule.dimensions]
    metric = _position(result, rule.metric_column, "metric column") if rule.metric_column else None
    groups: dict[GroupKey, list[Any]] = {} if rule.dimensions else {(): []}
    for row in result.rows:
        key = tuple("" if row[p] is None else str(row[p]) for p in positions)
        groups.setdefault(key, []).append(row[metric] if metric is not None else 1)
    return {key: _aggregate(values, rule.time_aggregation) for key, values in groups.items()}


def _aggregate(values: list[Any], aggregation: str) -> float | None:
    if aggregation == "Count":
        return len(values)
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        return None
    if aggregation == "Sum":
        return sum(numbers)
    if aggregation == "Average":
        return sum(numbers) / len(numbers)
    return min(numbers) if aggregation == "Minimum" else max(numbers)


def _position(result: QueryResult, name: str, what: str) -> int:
    index = result.column_index(name)
    if index is None:
        raise ValueError(
            f"{what} '{name}' is not a column of the query result ({[c for c, _ in result.columns]})"
        )
    return index


def _new_instance(rule: AlertRule, key: GroupKey, now: datetime) -> AlertInstance:
    seed = f"{rule.rule_id}|{'|'.join(key)}|{now.isoformat()}"
    return AlertInstance(str(uuid.uuid5(_IDS, seed)), str(uuid.uuid5(_IDS, "origin:" + seed)), now)


def _rule_id(workspace: Workspace, name: str) -> str:
    return (
        f"/subscriptions/{workspace.subscription_id}/resourceGroups/{workspace.resource_group}"
        f"/providers/microsoft.insights/scheduledqueryrules/{name}"
    )


def _threshold(raw: Any) -> tuple[str, float]:
    if not isinstance(raw, Mapping) or "operator" not in raw or "value" not in raw:
        raise ValueError("threshold must be a mapping with 'operator' and 'value'")
    name = _SYMBOLS.get(str(raw["operator"]), str(raw["operator"]))
    if name not in OPERATORS:
        raise ValueError(f"threshold operator '{raw['operator']}' is not one of {', '.join(OPERATORS)}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"threshold value must be a number, not {value!r}")
    return name, float(value)


def _severity(raw: Any) -> int:
    text = str(raw)
    number = text[3:] if text.lower().startswith("sev") else text
    if not number.isdigit() or not 0 <= int(number) <= 4:
        raise ValueError(f"severity must be 0..4 or Sev0..Sev4, not {raw!r}")
    return int(number)


def _positive(raw: Any, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise ValueError(f"{key} must be a positive number of seconds, not {raw!r}")
    return float(raw)
