"""The durable outbox: every Log Analytics record waits in Table Storage until an upload carrying it succeeds.

Keys (one table):
- `pending-{stream}` / `{TimeGenerated}-{RecordId}`: waiting, read back in TimeGenerated order;
- `failed-{stream}` / same row key: refused by the service on its own, kept with the error;
- `shipped-{stream}` / `{RecordId}`: markers of shipped job outcomes, so a job seen again is not re-sent;
- `watermark` / `{name}`: how far a collector has read, moved only after its records shipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from backupwarden.domain.log_schema import table_for_stream

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


def utc_now() -> datetime:
    return datetime.now(UTC)


class Outbox:
    def __init__(self, table: TableClient, clock: Callable[[], datetime] = utc_now) -> None:
        self._table = table
        self._clock = clock

    def ensure_table(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise OutboxUnavailable(f"cannot create table {self._table.table_name}") from exc

    # --- writing ---------------------------------------------------------------------------
    def add(self, stream: str, rows: list[dict[str, Any]], *, skip_shipped: bool = False) -> int:
        """Queue rows for upload; a row already pending (same time and id) is not added twice.

        `skip_shipped` also drops rows whose id was shipped before (job outcomes seen again).
        Returns how many rows were added.
        """
        if skip_shipped:
            rows = [row for row in rows if not self._was_shipped(stream, row)]
        entities = [self._pending_entity(stream, row) for row in rows]
        added = 0
        for start in range(0, len(entities), TRANSACTION_SIZE):
            added += self._create_all(entities[start : start + TRANSACTION_SIZE])
        return added

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
        return {
            "PartitionKey": f"pending-{stream}",
            "RowKey": f"{generated.astimezone(UTC).strftime(_KEY_TIME)}-{row[table.id_column]}",
            **row,
        }

    # --- reading -----------------------------------------------------------------------------
    def pending(self, stream: str) -> Iterator[PendingRecord]:
        """Waiting records of a stream, oldest TimeGenerated first, streamed page by page."""
        table = table_for_stream(stream)
        try:
            for entity in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": f"pending-{stream}"}, results_per_page=1000
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
        for start in range(0, len(records), TRANSACTION_SIZE):
            chunk = records[start : start + TRANSACTION_SIZE]
            if keep_markers:
                markers = [
                    {"PartitionKey": f"shipped-{r.stream}", "RowKey": r.record_id, "shipped": now}
                    for r in chunk
                ]
                self._transact([("upsert", m, {"mode": UpdateMode.REPLACE}) for m in markers], "mark shipped")
            deletes = [{"PartitionKey": f"pending-{r.stream}", "RowKey": r.row_key} for r in chunk]
            self._transact([("delete", d) for d in deletes], "delete shipped")

    def mark_failed(self, record: PendingRecord, error: str) -> None:
        """Park a record the service refuses on its own, with the error, out of the upload path."""
        entity = {
            "PartitionKey": f"failed-{record.stream}",
            "RowKey": record.row_key,
            **record.row,
            "error": error[:8000],
        }
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            self._table.delete_entity(f"pending-{record.stream}", record.row_key)
        except AzureError as exc:
            raise OutboxUnavailable("cannot park a failed record") from exc

    def prune_markers(self, stream: str, older_than: timedelta) -> int:
        cutoff = self._clock() - older_than
        try:
            old = list(
                self._table.query_entities(
                    "PartitionKey eq @pk and shipped lt @cutoff",
                    parameters={"pk": f"shipped-{stream}", "cutoff": cutoff},
                )
            )
        except AzureError as exc:
            raise OutboxUnavailable("cannot read shipped markers") from exc
        for start in range(0, len(old), TRANSACTION_SIZE):
            chunk = old[start : start + TRANSACTION_SIZE]
            self._transact(
                [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in chunk],
                "prune markers",
            )
        return len(old)

    def _was_shipped(self, stream: str, row: dict[str, Any]) -> bool:
        record_id = str(row[table_for_stream(stream).id_column])
        try:
            self._table.get_entity(f"shipped-{stream}", record_id)
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
            if etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceNotFoundError):
            return
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 412:
                return
            raise OutboxUnavailable(f"cannot move watermark {name}") from exc


def _plain(value: Any) -> Any:
    """Table Storage values back as plain Python: datetimes in UTC, EntityProperty unwrapped."""
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return datetime.fromtimestamp(value.timestamp(), UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value
