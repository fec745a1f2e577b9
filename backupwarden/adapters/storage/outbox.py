"""The durable outbox: every Log Analytics record waits in Table Storage until an upload carrying it succeeds.

Keys (one table):
- `pending-{stream}|{YYYYMMDDHH}` / `{TimeGenerated}-{RecordId}`: waiting, one partition per hour of
  TimeGenerated, read back in TimeGenerated order (partition, then row key);
- `failed-{stream}` / same row key: refused by the service on its own, kept with the error;
- `shipped-{stream}|{h}` / `{RecordId}`: markers of shipped job outcomes, so a job seen again is not
  re-sent; `h` is the first hex digit of the id's SHA-256 (16 partitions);
- `watermark` / `{name}`: how far a collector has read, moved only after its records shipped.

Pending records and markers are spread over partitions because a partition is a unit of throughput
(about 2,000 entities/s in Azure Table Storage) and a backlog in one partition is capped by it; in
Azurite each write also scans its whole partition, so a single partition makes 100,000 records
quadratic (bench/outcomes.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from backupwarden.adapters.storage.tables import ensure_table, write_on_etag
from backupwarden.domain.log_schema import table_for_stream
from backupwarden.domain.times import utc_now

TRANSACTION_SIZE = 100  # Table Storage's limit of operations per batch transaction
_KEY_TIME = "%Y%m%dT%H%M%S%fZ"


class OutboxUnavailable(Exception):
    """Table Storage failed; the cause is chained. Nothing was lost: the caller retries later."""


@dataclass(frozen=True)
class PendingRecord:
    stream: str
    row_key: str
    row: dict[str, Any]

    @property
    def record_id(self) -> str:
        return str(self.row[table_for_stream(self.stream).id_column])


class Outbox:
    def __init__(self, table: TableClient, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = table
        self._clock = clock

    def ensure_table(self) -> None:
        ensure_table(self._table, OutboxUnavailable)

    # --- writing ---------------------------------------------------------------------------
    def add(self, stream: str, rows: list[dict[str, Any]], *, skip_shipped: bool = False) -> int:
        """Queue rows for upload; a row already pending (same time and id) is not added twice.

        `skip_shipped` also drops rows whose id was shipped before (job outcomes seen again).
        Returns how many rows were added.
        """
        if skip_shipped:
            rows = [row for row in rows if not self._was_shipped(stream, row)]
        entities = [self._pending_entity(stream, row) for row in rows]
        return sum(self._create_all(chunk) for chunk in _transactions(entities))

    def _create_all(self, entities: list[dict[str, Any]]) -> int:
        unique = list({(e["PartitionKey"], e["RowKey"]): e for e in entities}.values())
        try:
            self._table.submit_transaction([("create", e) for e in unique])
            return len(unique)
        except TableTransactionError:
            pass  # some already exist: fall back to one by one, skipping those
        except AzureError as exc:
            raise OutboxUnavailable("cannot add records") from exc
        added = 0
        for entity in unique:
            try:
                self._table.create_entity(entity)
                added += 1
            except ResourceExistsError:
                continue
            except AzureError as exc:
                raise OutboxUnavailable("cannot add a record") from exc
        return added

    def _pending_entity(self, stream: str, row: dict[str, Any]) -> dict[str, Any]:
        table = table_for_stream(stream)
        generated = row["TimeGenerated"]
        row_key = f"{generated.astimezone(UTC).strftime(_KEY_TIME)}-{row[table.id_column]}"
        return {"PartitionKey": _pending_partition(stream, row_key), "RowKey": row_key, **row}

    # --- reading -----------------------------------------------------------------------------
    def pending(self, stream: str) -> Iterator[PendingRecord]:
        """Waiting records of a stream, oldest TimeGenerated first, streamed page by page."""
        table = table_for_stream(stream)
        try:
            for entity in self._table.query_entities(
                "PartitionKey ge @first and PartitionKey lt @after",
                parameters=_partitions_of(f"pending-{stream}"),
                results_per_page=1000,
            ):
                row = {name: _plain(entity.get(name)) for name in table.column_names}
                yield PendingRecord(stream, str(entity["RowKey"]), row)
        except AzureError as exc:
            raise OutboxUnavailable(f"cannot read pending records of {stream}") from exc

    def failed(self, stream: str) -> list[tuple[PendingRecord, str]]:
        table = table_for_stream(stream)
        try:
            found = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": f"failed-{stream}"})
            return [
                (
                    PendingRecord(
                        stream, str(e["RowKey"]), {n: _plain(e.get(n)) for n in table.column_names}
                    ),
                    str(e.get("error", "")),
                )
                for e in found
            ]
        except AzureError as exc:
            raise OutboxUnavailable(f"cannot read failed records of {stream}") from exc

    # --- bookkeeping after an upload ----------------------------------------------------------
    def mark_shipped(self, records: list[PendingRecord], *, keep_markers: bool) -> None:
        """Delete shipped records; for streams read again by a collector, keep a marker per id."""
        now = self._clock()
        if keep_markers:
            markers = [
                {
                    "PartitionKey": _marker_partition(r.stream, r.record_id),
                    "RowKey": r.record_id,
                    "shipped": now,
                }
                for r in records
            ]
            for chunk in _transactions(markers):
                self._transact([("upsert", m, {"mode": UpdateMode.REPLACE}) for m in chunk], "mark shipped")
        deletes = [
            {"PartitionKey": _pending_partition(r.stream, r.row_key), "RowKey": r.row_key} for r in records
        ]
        for chunk in _transactions(deletes):
            self._transact([("delete", d) for d in chunk], "delete shipped")

    def mark_failed(self, record: PendingRecord, error: str, *, keep_marker: bool = False) -> None:
        """Park a record the service refuses on its own, with the error, out of the upload path.

        `keep_marker` (job outcomes) also stops a collector from queueing it again on its next read.
        """
        if keep_marker:
            marker = {
                "PartitionKey": _marker_partition(record.stream, record.record_id),
                "RowKey": record.record_id,
                "shipped": self._clock(),
            }
            self._transact([("upsert", marker, {"mode": UpdateMode.REPLACE})], "mark parked")
        entity = {
            "PartitionKey": f"failed-{record.stream}",
            "RowKey": record.row_key,
            **record.row,
            "error": error[:8000],
        }
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            self._table.delete_entity(_pending_partition(record.stream, record.row_key), record.row_key)
        except AzureError as exc:
            raise OutboxUnavailable("cannot park a failed record") from exc

    def prune_markers(self, stream: str, older_than: timedelta) -> int:
        cutoff = self._clock() - older_than
        try:
            old = list(
                self._table.query_entities(
                    "PartitionKey ge @first and PartitionKey lt @after and shipped lt @cutoff",
                    parameters={**_partitions_of(f"shipped-{stream}"), "cutoff": cutoff},
                )
            )
        except AzureError as exc:
            raise OutboxUnavailable("cannot read shipped markers") from exc
        for chunk in _transactions(old):
            self._transact(
                [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in chunk],
                "prune markers",
            )
        return len(old)

    def _was_shipped(self, stream: str, row: dict[str, Any]) -> bool:
        record_id = str(row[table_for_stream(stream).id_column])
        try:
            self._table.get_entity(_marker_partition(stream, record_id), record_id)
            return True
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise OutboxUnavailable("cannot read a shipped marker") from exc

    def _transact(self, operations: list[Any], what: str) -> None:
        if not operations:
            return
        try:
            self._table.submit_transaction(operations)
        except TableTransactionError:
            # one entity already gone (a concurrent shipper): apply the rest one by one
            for operation in operations:
                with contextlib.suppress(ResourceNotFoundError):
                    self._apply(operation)
        except AzureError as exc:
            raise OutboxUnavailable(f"cannot {what}") from exc

    def _apply(self, operation: Any) -> None:
        kind, entity = operation[0], operation[1]
        if kind == "delete":
            self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        else:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # --- watermarks ----------------------------------------------------------------------------
    def watermark(self, name: str) -> tuple[datetime | None, str | None]:
        try:
            entity = self._table.get_entity("watermark", name)
        except ResourceNotFoundError:
            return None, None
        except AzureError as exc:
            raise OutboxUnavailable(f"cannot read watermark {name}") from exc
        return _plain(entity["value"]), str(entity.metadata["etag"])

    def move_watermark(self, name: str, value: datetime, etag: str | None) -> None:
        """Only forward, and only from the value read (a concurrent run that moved it first wins)."""
        entity = {"PartitionKey": "watermark", "RowKey": name, "value": value}
        try:
            write_on_etag(self._table, entity, etag)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 412:
                return
            raise OutboxUnavailable(f"cannot move watermark {name}") from exc


def _pending_partition(stream: str, row_key: str) -> str:
    """The hour of TimeGenerated, read from the row key (`YYYYMMDDTHH...`)."""
    return f"pending-{stream}|{row_key[:8]}{row_key[9:11]}"


def _marker_partition(stream: str, record_id: str) -> str:
    return f"shipped-{stream}|{hashlib.sha256(record_id.encode('utf-8')).hexdigest()[0]}"


def _partitions_of(prefix: str) -> dict[str, str]:
    """Query parameters `first`/`after` bounding every partition key `{prefix}|...` ('}' follows '|')."""
    return {"first": f"{prefix}|", "after": f"{prefix}}}"}


def _transactions(entities: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entities grouped as batch transactions take them: one partition each, at most TRANSACTION_SIZE."""
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for entity in entities:
        by_partition.setdefault(str(entity["PartitionKey"]), []).append(entity)
    for group in by_partition.values():
        for start in range(0, len(group), TRANSACTION_SIZE):
            yield group[start : start + TRANSACTION_SIZE]


def _plain(value: Any) -> Any:
    """Table Storage values back as plain Python: datetimes in UTC, EntityProperty unwrapped."""
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return datetime.fromtimestamp(value.timestamp(), UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value
