"""Running KQL for real (duckdb-kql) over the store's rows at an as-of time and a scope.

Views named like ARG's tables show the row versions valid at the as-of time in the requested
subscriptions, in id order. A result is materialised once; a later page of the same query,
scope and data is cut from it instead of running the query again (ARG re-runs it, which differs
only if the data changed in between, and then this runs it again too; `now()` keeps the value
of the run that made the result).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import duckdb_kql

from emulator.resourcegraph.rows import COLUMN_NAMES, TABLES
from emulator.resourcegraph.store import STORE, GraphStore, naive_utc

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ResultPage:
    columns: list[str]
    types: list[str]  # DuckDB type names
    total: int
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class _Materialised:
    kql: str
    scope: tuple[str, ...] | None
    store_version: int
    epoch: int
    columns: list[str]
    types: list[str]
    total: int


class KqlRunner:
    """Runs queries into one temporary result table of its own (`result_table`)."""

    def __init__(self, store: GraphStore, result_table: str) -> None:
        self._store = store
        self._result = result_table
        self._last: _Materialised | None = None

    def page(
        self, kql: str, scope: list[str] | None, as_of: datetime, now: datetime, offset: int, limit: int
    ) -> ResultPage:
        """Rows `offset`..`offset+limit` of `kql` over the rows valid at `as_of` in `scope` (None: all)."""
        con = self._store.connection()
        # Only a later page reuses a result: a first page always runs the query afresh.
        result = self._reusable(kql, scope, as_of) if offset > 0 else None
        if result is None:
            result = self._materialise(con, kql, scope, as_of, now)
        rows = (
            con.execute(f"SELECT * FROM {self._result} LIMIT ? OFFSET ?", [limit, offset]).fetchall()
            if limit
            else []
        )
        return ResultPage(result.columns, result.types, result.total, rows)

    def _reusable(self, kql: str, scope: list[str] | None, as_of: datetime) -> _Materialised | None:
        last = self._last
        if last is None or (last.kql, last.scope) != (kql, _scope_key(scope)):
            return None
        if (last.store_version, last.epoch) != (self._store.version, self._store.visible_epoch(as_of)):
            return None
        return last

    def _materialise(
        self,
        con: duckdb.DuckDBPyConnection,
        kql: str,
        scope: list[str] | None,
        as_of: datetime,
        now: datetime,
    ) -> _Materialised:
        self._last = None
        _show(con, scope, as_of)
        translated = duckdb_kql.to_sql(kql, schema=_schema_for(kql), allow_write=False, query_now=now)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {self._result} AS {translated}", translated.parameters or None
        )
        shape = con.sql(f"SELECT * FROM {self._result} LIMIT 0")
        total = con.execute(f"SELECT count(*) FROM {self._result}").fetchall()[0][0]
        self._last = _Materialised(
            kql,
            _scope_key(scope),
            self._store.version,
            self._store.visible_epoch(as_of),
            list(shape.columns),
            [str(kind) for kind in shape.types],
            int(total),
        )
        return self._last


def _show(con: duckdb.DuckDBPyConnection, scope: list[str] | None, as_of: datetime) -> None:
    """Point the views named like ARG's tables at the versions valid at `as_of` in `scope`."""
    con.execute(f"DELETE FROM {STORE}.scope")
    if scope is not None:
        con.execute(f"INSERT INTO {STORE}.scope SELECT unnest(?::VARCHAR[])", [[s.lower() for s in scope]])
    moment = naive_utc(as_of).isoformat(sep=" ")
    in_scope = (
        "" if scope is None else f" AND lower(subscriptionId) IN (SELECT subscription FROM {STORE}.scope)"
    )
    columns = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
    for table in TABLES:
        con.execute(
            f'CREATE OR REPLACE VIEW main."{table}" AS SELECT {columns} FROM {STORE}."{table}" '
            f"WHERE _from <= TIMESTAMP '{moment}' AND (_to IS NULL OR _to > TIMESTAMP '{moment}')"
            f"{in_scope} ORDER BY id"
        )


def _scope_key(scope: list[str] | None) -> tuple[str, ...] | None:
    return None if scope is None else tuple(sorted(s.lower() for s in scope))


# A query of the usual shapes (filters, extend, both joins' kinds, summarize by, project, order):
# translating it once warms the pure-Python KQL parser, whose first parse of a shape costs ~0.3 s
# of CPU that Azure's Resource Graph does not charge its callers.
WARM_UP_QUERY = """
resources
| where type =~ 'microsoft.compute/virtualmachines' and tostring(properties.x) =~ 'y'
| extend key = tolower(tostring(split(tolower(id), '/providers/')[0])), tagged = tostring(tags.a)
| join kind=leftouter (
    recoveryservicesresources
    | extend state = tostring(properties.status)
    | summarize running = countif(state =~ 'InProgress'),
                lastEnd = max(iff(state =~ 'Completed', todatetime(properties.endTime), datetime(null)))
        by key = tolower(tostring(properties.containerName))
  ) on key
| join kind=inner (resources | project key = tolower(id), vmTags = tags) on key
| project id, subscriptionId, key, name, running, lastEnd, vmTags
| order by id asc
"""


_warmed = threading.Event()


def warm_up(now: datetime) -> None:
    """Translate WARM_UP_QUERY, discarding the result; once a process (the parser's cache is global)."""
    if _warmed.is_set():
        return
    duckdb_kql.to_sql(WARM_UP_QUERY, schema=_schema_for(WARM_UP_QUERY), allow_write=False, query_now=now)
    _warmed.set()


def _schema_for(kql: str) -> dict[str, list[str]]:
    """The tables' columns under every spelling the query uses: ARG's table names ignore case."""
    schema = {table: list(COLUMN_NAMES) for table in TABLES}
    for word in set(_WORD.findall(kql)):
        if word.lower() in schema:
            schema[word] = list(COLUMN_NAMES)
    return schema
