"""Resource Graph's rows in DuckDB, versioned so a query can read the estate as it was.

Each row version carries `_from`/`_to` (emulated UTC). `sync` compares every entity with what it
saw last time (field by field, so in-place edits count), closes the versions of changed or
vanished entities and appends new ones; only those rows are rebuilt. The store has no hook into
writes, so a change is stamped with the moment the entity itself records for it (a job's start
or end, an item's configuration or last backup, a VM's creation) when that lies since the last
sync, and otherwise with the time of the sync that noticed it. So with a lag, a new item or job
and a job's end show up `lag` seconds after they happened, whenever the queries come; other edits
(tags, a failed backup's item) `lag` seconds after the next query. The estate of the first sync is
visible from the start. Versions nobody can see any more are dropped.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import duckdb
import duckdb_kql

from emulator.estate import Estate
from emulator.resourcegraph.rows import (
    COLUMN_NAMES,
    COLUMNS,
    TABLES,
    Tracked,
    build_row,
    changed_at,
    estate_entities,
    fingerprint,
)

STORE = "store"  # the attached database of row versions; KQL's bare table names are views in main
BEGINNING = datetime(1970, 1, 1)
INSERT_BATCH = 50_000
_ENCODER = json.JSONEncoder(check_circular=False, separators=(",", ":"), default=str)
_VERSIONED_COLUMNS = [("_key", "VARCHAR"), ("_from", "TIMESTAMP"), ("_to", "TIMESTAMP"), *COLUMNS]


class GraphStore:
    """The versioned `resources` and `recoveryservicesresources` tables, and the change detection."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._seen: dict[str, dict[str, tuple[Any, ...]]] = {}  # kind -> key -> fingerprint
        self._synced = False
        self._version = 0
        self._stamps: list[datetime] = []  # ascending: when versions opened or closed after the first sync
        self._forgotten_stamps = 0
        self._last_sync = BEGINNING

    # --- keeping the tables in step with the estate ------------------------------------------
    def sync(self, estate: Estate, now: datetime, keep_since: datetime) -> int:
        """Record what changed since the last sync; returns the number of rows written."""
        con = self.connection()
        first, self._synced = not self._synced, True
        changed: list[Tracked] = []
        vanished: list[str] = []
        for kind, entities in estate_entities(estate, now):
            seen = self._seen.setdefault(kind, {})
            for key, entity in entities.items():
                current = fingerprint(entity)
                if seen.get(key) != current:
                    changed.append(Tracked(kind, key, entity, current))
            vanished.extend(f"{kind}:{key}" for key in seen.keys() - entities.keys())
        stamp = naive_utc(now)
        if changed or vanished:
            by_stamp: dict[datetime, list[Tracked]] = {}
            for tracked in changed:
                at = BEGINNING if first else self._change_stamp(tracked, stamp)
                by_stamp.setdefault(at, []).append(tracked)
            self._close(con, vanished, stamp)
            for at, group in sorted(by_stamp.items()):
                self._close(con, [t.row_key for t in group if t.key in self._seen[t.kind]], at)
                self._append(con, group, estate, now, at)
            self._remember(changed, vanished)
            self._version += 1
            if not first:
                self._stamps.extend(sorted(set(by_stamp) | ({stamp} if vanished else set())))
        self._last_sync = max(self._last_sync, stamp)
        self._forget_before(con, naive_utc(keep_since))
        return len(changed)

    def _change_stamp(self, tracked: Tracked, noticed: datetime) -> datetime:
        """When the change happened: the entity's own record of it if that lies since the last sync."""
        recorded = changed_at(tracked.entity)
        if recorded is None:
            return noticed
        at = naive_utc(recorded)
        return min(at, noticed) if at >= self._last_sync else noticed

    def _forget_before(self, con: duckdb.DuckDBPyConnection, moment: datetime) -> None:
        """Drop versions no reader can see any more: those that ended by `moment`."""
        if not self._stamps or self._stamps[0] > moment:
            return
        for table in TABLES:
            con.execute(f'DELETE FROM {STORE}."{table}" WHERE _to IS NOT NULL AND _to <= ?', [moment])
        kept = [stamp for stamp in self._stamps if stamp > moment]
        self._forgotten_stamps += len(self._stamps) - len(kept)
        self._stamps = kept

    def _remember(self, changed: list[Tracked], vanished: list[str]) -> None:
        for tracked in changed:
            self._seen[tracked.kind][tracked.key] = tracked.fingerprint
        for row_key in vanished:
            kind, key = row_key.split(":", 1)
            del self._seen[kind][key]

    def _close(self, con: duckdb.DuckDBPyConnection, keys: list[str], stamp: datetime) -> None:
        if not keys:
            return
        for table in TABLES:
            con.execute(
                f'UPDATE {STORE}."{table}" SET _to = ? '
                "WHERE _to IS NULL AND _key IN (SELECT unnest(?::VARCHAR[]))",
                [stamp, keys],
            )

    def _append(
        self,
        con: duckdb.DuckDBPyConnection,
        changed: list[Tracked],
        estate: Estate,
        now: datetime,
        since: datetime,
    ) -> None:
        for table in TABLES:
            rows = (({"_key": t.row_key} | build_row(t, estate, now)) for t in changed if t.table == table)
            _bulk_insert(con, table, rows, since)

    # --- what readers need -----------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Bumped by every sync that wrote something."""
        return self._version

    def visible_epoch(self, as_of: datetime) -> int:
        """How many version stamps lie at or before `as_of`: readers at two times with the same
        epoch (and store version) see the same rows."""
        return self._forgotten_stamps + bisect.bisect_right(self._stamps, naive_utc(as_of))

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened (with empty tables) on first use."""
        if self._con is None:
            con = duckdb_kql.connect()
            # One thread: a query gives its rows in the same order every time, so pages do not overlap.
            con.execute("SET threads=1")
            # Compressed: 100,000 protected items take ~75 MB instead of ~300 MB.
            con.execute(f"ATTACH ':memory:' AS {STORE} (COMPRESS)")
            definition = ", ".join(f'"{name}" {kind}' for name, kind in _VERSIONED_COLUMNS)
            for table in TABLES:
                con.execute(f'CREATE TABLE {STORE}."{table}" ({definition})')
            con.execute(f"CREATE TABLE {STORE}.scope (subscription VARCHAR)")
            self._con = con
        return self._con


def _bulk_insert(
    con: duckdb.DuckDBPyConnection, table: str, rows: Iterable[dict[str, Any]], since: datetime
) -> None:
    """Insert through newline-delimited JSON files: far faster than row-by-row inserts.

    In batches, so a large estate never sits in one file (or one DuckDB read buffer) at once.
    """
    batch: list[str] = []
    for row in rows:
        batch.append(_ENCODER.encode(row))
        if len(batch) == INSERT_BATCH:
            _insert_lines(con, table, batch, since)
            batch = []
    if batch:
        _insert_lines(con, table, batch, since)


def _insert_lines(con: duckdb.DuckDBPyConnection, table: str, lines: list[str], since: datetime) -> None:
    handle, path = tempfile.mkstemp(suffix=".ndjson", prefix="resourcegraph-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("\n".join(lines))
        spec = {name: kind for name, kind in [("_key", "VARCHAR"), *COLUMNS]}
        names = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
        con.execute(
            f'INSERT INTO {STORE}."{table}" SELECT _key, ?::TIMESTAMP, NULL, {names} '
            f"FROM read_json(?, format='newline_delimited', columns={spec!r})",
            [since, path],
        )
    finally:
        os.unlink(path)


def naive_utc(moment: datetime) -> datetime:
    """DuckDB TIMESTAMPs are naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
