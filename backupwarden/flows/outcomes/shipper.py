"""Ship outbox records to Log Analytics: in TimeGenerated order, in uploads under 1 MiB, none lost or resent.

A batch is removed from the outbox only after its upload succeeded. A batch the service refuses
(400/413) is halved until the record at fault stands alone; that record is parked with its error
and the rest ship. Throttling or an outage stops the run: the records wait for the next one. So
does a run near the end of its time budget (a backlog after an outage can outlast one run): it
sends no further batch and the next run goes on from there.
Between a successful upload and the bookkeeping a crash can resend that batch once (at least
once); `kql/dedupe_*.kql` read the tables de-duplicated by RecordId.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
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
from backupwarden.domain.times import Deadline

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
    stopped: str | None = None  # why the upload failed and the run stopped (the rest waits in the outbox)
    out_of_time: bool = False  # the run's time budget was nearly spent: the rest waits for the next run

    @property
    def complete(self) -> bool:
        return self.stopped is None and not self.out_of_time


class Shipper:
    def __init__(self, outbox: Outbox, uploader: Uploader, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self._outbox = outbox
        self._uploader = uploader
        self._max = max_upload_bytes

    def ship(
        self, stream: str, deadline: Deadline | None = None, margin: timedelta = timedelta(0)
    ) -> ShipResult:
        """Every pending record of `stream`, batch by batch; no batch is started with `margin` or less
        left of `deadline` (one upload's timeout, so a started upload can end within the budget)."""
        result = ShipResult(stream)
        try:
            for batch in self._batches(stream):
                if deadline is not None and deadline.near_end(margin):
                    result.out_of_time = True
                    logger.warning(
                        "log upload paused: the run's time budget is nearly spent; the rest waits",
                        extra={"stream": stream, "shipped": result.shipped},
                    )
                    break
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
