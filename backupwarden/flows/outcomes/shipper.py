"""Ship outbox records to Log Analytics: in TimeGenerated order, in uploads under 1 MiB, none lost or resent.

A batch is removed from the outbox only after its upload succeeded. A batch the service refuses
(400/413) is halved until the record at fault stands alone; that record is parked with its error
and the rest ship. Throttling or an outage stops the run: the records wait for the next one.
Between a successful upload and the bookkeeping a crash can resend that batch once (at least
once); `kql/dedupe_*.kql` read the tables de-duplicated by RecordId.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from backupwarden.adapters.azure.logs_ingestion import (
    MAX_UPLOAD_BYTES,
    IngestionUnavailable,
    RejectedBatch,
    row_json,
    row_size,
)
from backupwarden.adapters.storage.outbox import Outbox, PendingRecord
from backupwarden.domain.log_schema import JOB_OUTCOMES

logger = logging.getLogger(__name__)


class Uploader(Protocol):
    def upload(self, stream: str, rows: list[dict[str, object]]) -> None: ...


@dataclass
class ShipResult:
    stream: str
    shipped: int = 0
    upload_calls: int = 0
    bytes_sent: int = 0
    parked: list[str] = field(default_factory=list)  # record ids refused on their own
    stopped: str | None = None  # why the run stopped early (the rest waits in the outbox)

    @property
    def complete(self) -> bool:
        return self.stopped is None


class Shipper:
    def __init__(self, outbox: Outbox, uploader: Uploader, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self._outbox = outbox
        self._uploader = uploader
        self._max = max_upload_bytes

    def ship(self, stream: str) -> ShipResult:
        result = ShipResult(stream)
        try:
            for batch in self._batches(stream):
                self._send(batch, result)
        except IngestionUnavailable as exc:
            result.stopped = str(exc)
            logger.warning(
                "log upload stopped; records wait in the outbox", extra={"stream": stream, "error": str(exc)}
            )
        return result

    def _batches(self, stream: str) -> Iterator[list[tuple[PendingRecord, dict[str, object], int]]]:
        batch: list[tuple[PendingRecord, dict[str, object], int]] = []
        size = 0
        for record in self._outbox.pending(stream):
            wire = row_json(record.row)
            bytes_ = row_size(wire)
            if batch and size + bytes_ > self._max:
                yield batch
                batch, size = [], 0
            batch.append((record, wire, bytes_))
            size += bytes_
        if batch:
            yield batch

    def _send(self, batch: list[tuple[PendingRecord, dict[str, object], int]], result: ShipResult) -> None:
        result.upload_calls += 1
        try:
            self._uploader.upload(result.stream, [wire for _, wire, _ in batch])
        except RejectedBatch as exc:
            if len(batch) == 1:
                record = batch[0][0]
                self._outbox.mark_failed(
                    record, f"HTTP {exc.status}: {exc}", keep_marker=result.stream == JOB_OUTCOMES.stream
                )
                result.parked.append(record.record_id)
                logger.error(
                    "log record refused; parked in the outbox", extra={"record_id": record.record_id}
                )
                return
            middle = len(batch) // 2
            self._send(batch[:middle], result)
            self._send(batch[middle:], result)
            return
        records = [record for record, _, _ in batch]
        self._outbox.mark_shipped(records, keep_markers=result.stream == JOB_OUTCOMES.stream)
        result.shipped += len(records)
        result.bytes_sent += sum(size for _, _, size in batch)
