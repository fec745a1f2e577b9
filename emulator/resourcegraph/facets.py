"""Facets: counts of the query result grouped by a column list, computed with the query itself.

A facet expression names result columns; a dotted path (`properties.a.b`) names the column a
projection of it produced (`properties_a_b`), as ARG resolves it. Options: `filter` (a `where`
condition), `sortBy` (default: the count), `sortOrder` (default desc), `$top` (default 10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FacetRunner = Callable[[str, int], tuple[int, list[dict[str, Any]]]]
DEFAULT_TOP = 10


class FacetFailure(Exception):
    """The facet's query could not run; the message says why."""


@dataclass(frozen=True)
class FacetSpec:
    expression: str
    columns: list[str]
    filter: str | None
    sort_by: str
    sort_order: str
    top: int


def facet_result(request: Any, result_columns: list[str], query: str, run: FacetRunner) -> dict[str, Any]:
    """One entry of the answer's `facets`; `run(kql, top)` gives (total rows, first `top` rows)."""
    expression = str(request.get("expression", "")) if isinstance(request, dict) else ""
    wanted = [part.strip() for part in expression.split(",") if part.strip()]
    columns = [_column_for(name, result_columns) for name in wanted]
    invalid = [name for name, column in zip(wanted, columns, strict=True) if column is None]
    if not wanted or invalid:
        return _facet_error(expression, invalid or [expression])
    spec = _spec(expression, [c for c in columns if c is not None], request.get("options") or {})
    try:
        total, rows = run(_facet_query(query, spec), spec.top)
    except FacetFailure as exc:
        return {
            "expression": expression,
            "resultType": "FacetError",
            "errors": [{"code": "InvalidFacet", "message": str(exc)}],
        }
    return {
        "expression": expression,
        "resultType": "FacetResult",
        "totalRecords": total,
        "count": len(rows),
        "data": rows,
    }


def _column_for(name: str, result_columns: list[str]) -> str | None:
    for candidate in (name, name.replace(".", "_")):
        if candidate in result_columns:
            return candidate
    return None


def _spec(expression: str, columns: list[str], options: dict[str, Any]) -> FacetSpec:
    order = str(options.get("sortOrder") or "desc").lower()
    top = options.get("$top")
    return FacetSpec(
        expression=expression,
        columns=columns,
        filter=options.get("filter") or None,
        sort_by=str(options.get("sortBy") or "['count']"),
        sort_order="asc" if order == "asc" else "desc",
        top=top if isinstance(top, int) and 1 <= top <= 1000 else DEFAULT_TOP,
    )


def _facet_query(query: str, spec: FacetSpec) -> str:
    lines = [query]
    if spec.filter:
        lines.append(f"| where {spec.filter}")
    group = ", ".join(f"['{column}']" for column in spec.columns)
    lines.append(f"| summarize ['count'] = count() by {group}")
    lines.append(f"| order by {spec.sort_by} {spec.sort_order}")
    return "\n".join(lines)


def _facet_error(expression: str, invalid: list[str]) -> dict[str, Any]:
    return {
        "expression": expression,
        "resultType": "FacetError",
        "errors": [
            {"code": "NoValidColumns", "message": "No valid columns in facet expression."},
            {"code": "InvalidColumnNames", "message": f"Invalid column names: [{', '.join(invalid)}]."},
        ],
    }
