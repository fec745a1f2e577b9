"""Log Analytics tables in DuckDB, queried with real KQL through duckdb-kql.

One DuckDB connection holds every workspace, each in its own attached in-memory catalog, so a
cross-workspace query (`workspaces: [...]`) is a UNION like the service's. A query never reads
the stored tables directly: before each one, views in the main catalog expose only the rows the
service would show — already visible (ingestion delay) and inside the request's `timespan` on
TimeGenerated — from the workspaces the request names. Callers hold `emulator.lock`, which also
serialises use of the connection.

`ingestion_time()` (Kusto's hidden `$IngestionTime` column; duckdb-kql has no mapping for it) reads
the moment a row became queryable: the query's calls are rewritten to that column, which the views
carry only for such a query and which never shows in a result unless the query names it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb_kql
from duckdb_kql.types import kusto_type

from emulator.monitor.columns import Column
from emulator.monitor.results import QueryResult, to_wire
from emulator.monitor.timespans import Window

VISIBLE_AT = "__visible_at"  # stored beside every row, never shown
INGESTION_TIME = "$IngestionTime"
_INGESTION_TIME_CALL = re.compile(r"\bingestion_time\s*\(\s*\)")


class LogStore:
    def __init__(self) -> None:
        self._con = duckdb_kql.connect()
        self._views: set[str] = set()

    def add_catalog(self, catalog: str) -> None:
        self._con.execute(f"ATTACH ':memory:' AS {_quote(catalog)}")

    def create_table(self, catalog: str, table: str, columns: Sequence[Column]) -> None:
        definitions = ", ".join(f"{_quote(c.name)} {c.storage_type}" for c in columns)
        self._con.execute(
            f"CREATE TABLE {_quote(catalog)}.{_quote(table)} ({definitions}, {_quote(VISIBLE_AT)} TIMESTAMP)"
        )

    def add_column(self, catalog: str, table: str, column: Column) -> None:
        target = f"{_quote(catalog)}.{_quote(table)}"
        self._con.execute(f"ALTER TABLE {target} ADD COLUMN {_quote(column.name)} {column.storage_type}")

    def insert(
        self,
        catalog: str,
        table: str,
        columns: Sequence[Column],
        rows: list[dict[str, Any]],
        visible_at: datetime,
    ) -> None:
        """Rows as column -> stored value; one statement per call (unnest of typed lists is fast)."""
        if not rows:
            return
        names = ", ".join(_quote(c.name) for c in columns) + f", {_quote(VISIBLE_AT)}"
        unnests = ", ".join(f"unnest(?::{c.storage_type}[])" for c in columns) + ", unnest(?::TIMESTAMP[])"
        values = [[row.get(c.name) for row in rows] for c in columns] + [[_naive(visible_at)] * len(rows)]
        self._con.execute(f"INSERT INTO {_quote(catalog)}.{_quote(table)} ({names}) SELECT {unnests}", values)

    def read(self, catalog: str, table: str, columns: Sequence[Column]) -> list[dict[str, Any]]:
        names = ", ".join(_quote(c.name) for c in columns)
        fetched = self._con.execute(f"SELECT {names} FROM {_quote(catalog)}.{_quote(table)}").fetchall()
        return [dict(zip([c.name for c in columns], row, strict=True)) for row in fetched]

    def query(
        self, tables: dict[str, list[str]], text: str, now: datetime, window: Window | None
    ) -> QueryResult:
        """Run KQL over `tables` (name -> catalogs holding it); engine errors propagate."""
        with_ingestion_time = bool(_INGESTION_TIME_CALL.search(text))
        text = _INGESTION_TIME_CALL.sub(f"['{INGESTION_TIME}']", text)
        self._expose(tables, now, window, with_ingestion_time)
        # The query API never writes: control commands such as `.set-or-replace` are refused.
        relation = duckdb_kql.kql(self._con, text, allow_write=False, query_now=_aware(now))
        kinds = [kusto_type(t) for t in relation.types]
        shown = [index for index, name in enumerate(relation.columns) if name != INGESTION_TIME]
        rows = [[to_wire(row[index], kinds[index]) for index in shown] for row in relation.fetchall()]
        return QueryResult([(relation.columns[index], kinds[index]) for index in shown], rows)

    def _expose(
        self, tables: dict[str, list[str]], now: datetime, window: Window | None, with_ingestion_time: bool
    ) -> None:
        for view in self._views:
            self._con.execute(f"DROP VIEW IF EXISTS main.{_quote(view)}")
        self._views = set()
        for table, catalogs in tables.items():
            selects = [
                _visible_rows(catalog, table, now, window, with_ingestion_time) for catalog in catalogs
            ]
            self._con.execute(f"CREATE VIEW main.{_quote(table)} AS {' UNION ALL BY NAME '.join(selects)}")
            self._views.add(table)


def _visible_rows(
    catalog: str, table: str, now: datetime, window: Window | None, with_ingestion_time: bool
) -> str:
    conditions = [f"{_quote(VISIBLE_AT)} <= {_timestamp(now)}"]
    if window is not None:
        conditions.append(f'"TimeGenerated" BETWEEN {_timestamp(window[0])} AND {_timestamp(window[1])}')
    ingestion_time = f", {_quote(VISIBLE_AT)} AS {_quote(INGESTION_TIME)}" if with_ingestion_time else ""
    return (
        f"SELECT * EXCLUDE ({_quote(VISIBLE_AT)}){ingestion_time} FROM {_quote(catalog)}.{_quote(table)} "
        f"WHERE {' AND '.join(conditions)}"
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMP '{_naive(moment).isoformat(sep=' ')}'"


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
