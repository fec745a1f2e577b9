"""Query results as ARG writes them: `objectArray` (a list of objects) or `table` (columns + rows).

Kusto strings are never null, so a missing string reads "" (as an unmatched outer-join column
does in ARG); `dynamic` values are plain JSON, datetimes ISO-8601 with a `Z`, timespans
`[d.]hh:mm:ss[.fffffff]`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from emulator.recoveryservices.shapes import iso

_TABLE_TYPES = {
    "VARCHAR": "string",
    "JSON": "object",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "datetime",
    "TIMESTAMP WITH TIME ZONE": "datetime",
    "DATE": "datetime",
}
_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}


def object_array(columns: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        {name: cell(value, kind) for name, kind, value in zip(columns, types, row, strict=True)}
        for row in rows
    ]


def table(columns: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {
        "columns": [
            {"name": name, "type": column_type(kind)} for name, kind in zip(columns, types, strict=True)
        ],
        "rows": [[cell(value, kind) for kind, value in zip(types, row, strict=True)] for row in rows],
    }


def column_type(duckdb_type: str) -> str:
    """ARG's ColumnDataType for a DuckDB column type."""
    if duckdb_type in _TABLE_TYPES:
        return _TABLE_TYPES[duckdb_type]
    if duckdb_type in _INTEGER_TYPES:
        return "integer"
    if duckdb_type in ("DOUBLE", "FLOAT") or duckdb_type.startswith("DECIMAL"):
        return "number"
    if duckdb_type.endswith("]") or duckdb_type.startswith(("STRUCT", "MAP")):
        return "object"
    return "string"


def cell(value: Any, duckdb_type: str) -> Any:
    if value is None:
        return "" if duckdb_type == "VARCHAR" else None
    if duckdb_type == "JSON":
        return json.loads(value)
    return plain(value)


def plain(value: Any) -> Any:
    """A DuckDB value as JSON-ready Python."""
    if isinstance(value, datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    if isinstance(value, timedelta):
        return kusto_timespan(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def kusto_timespan(span: timedelta) -> str:
    ticks = (span.days * 86_400 + span.seconds) * 10_000_000 + span.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rest = divmod(ticks, 86_400 * 10_000_000)
    hours, rest = divmod(rest, 3_600 * 10_000_000)
    minutes, rest = divmod(rest, 60 * 10_000_000)
    seconds, fraction = divmod(rest, 10_000_000)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{fraction:07d}" if fraction else text
