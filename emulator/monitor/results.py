"""Query results as the Log Analytics query API writes them: Kusto column types, JSON cell values."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from emulator.monitor.timespans import iso_z_precise


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]  # (name, Kusto type)
    rows: list[list[Any]]  # JSON-ready cells

    def column_index(self, name: str) -> int | None:
        for index, (column, _) in enumerate(self.columns):
            if column == name:
                return index
        return None

    def to_body(self) -> dict[str, Any]:
        return {
            "tables": [
                {
                    "name": "PrimaryResult",
                    "columns": [{"name": name, "type": kind} for name, kind in self.columns],
                    "rows": self.rows,
                }
            ]
        }


def to_wire(value: Any, kind: str) -> Any:
    """One cell. Numbers and bools stay JSON numbers and bools; datetimes are ISO with a Z;
    dynamic values are JSON text, as the service sends them (the SDK hands them over as str)."""
    if value is None:
        return None
    if kind == "datetime":
        if isinstance(value, datetime):
            return iso_z_precise(value)
        if isinstance(value, date):
            return f"{value.isoformat()}T00:00:00Z"
        return str(value)
    if kind == "timespan":
        return _timespan(value)
    if kind == "dynamic":
        return _dynamic(value)
    if kind == "real" and isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if kind in ("guid", "decimal"):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _dynamic(value: Any) -> str:
    if isinstance(value, str):
        try:
            return json.dumps(json.loads(value), separators=(",", ":"))
        except ValueError:
            return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _timespan(value: Any) -> str:
    """.NET TimeSpan text, `[-][d.]hh:mm:ss[.fffffff]`, which Kusto uses."""
    if isinstance(value, time):
        value = timedelta(
            hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
        )
    if not isinstance(value, timedelta):
        return str(value)
    sign = "-" if value < timedelta(0) else ""
    rest = abs(value)
    hours, seconds = divmod(rest.seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if rest.days:
        text = f"{rest.days}.{text}"
    if rest.microseconds:
        text = f"{text}.{rest.microseconds:06d}0"
    return sign + text
