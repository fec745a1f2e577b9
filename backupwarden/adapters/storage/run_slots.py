"""The per-run cap across queue workers: a counter entity in the ledger table, changed only by ETag.

The planner knows how many candidates it enqueued that could still be triggered (those
`skip_before_verifying` lets through). When they are no more than BACKUPWARDEN_MAX_TRIGGERS_PER_RUN,
the cap cannot be reached and workers count nothing (`UncappedSlots`). Otherwise every work item
carries the cap and each decision to trigger takes a slot here: read the run's counter, decide
with it, and write counter + 1 on the ETag that was read (only one writer of a value wins; the
losers read again and decide again). A trigger that does not happen gives its slot back the same
way. So the run never triggers more than the cap, however many workers race, as `RunSlots` does
within one process.

The counter lives in the ledger table under its own partition (`sweeprun`; VM partitions are
sha256 hex digests), one entity per run.
"""

from __future__ import annotations

from collections.abc import Callable

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient

from backupwarden.adapters.storage.ledger import LedgerUnavailable
from backupwarden.adapters.storage.tables import write_on_etag
from backupwarden.domain.sweep_rules import TriggerDecision

RUN_COUNTER_PARTITION = "sweeprun"
MAX_ROUNDS = 50  # optimistic rounds per decision; each lost round means another worker's write won


class UncappedSlots:
    """The plan cannot reach the cap: every decision sees 0 triggers so far."""

    def take(self, decide: Callable[[int], TriggerDecision]) -> TriggerDecision:
        return decide(0)

    def give_back(self) -> None:
        pass


class LedgerRunSlots:
    """The run's trigger count in Table Storage, shared by every worker of every instance."""

    def __init__(self, table: TableClient, run_id: str) -> None:
        self._table = table
        self._run_id = run_id

    def take(self, decide: Callable[[int], TriggerDecision]) -> TriggerDecision:
        for _ in range(MAX_ROUNDS):
            count, etag = self._read()
            decision = decide(count)
            if not decision.trigger or self._write(count + 1, etag):
                return decision
        raise LedgerUnavailable(f"the trigger counter of run {self._run_id} stayed contended")

    def give_back(self) -> None:
        for _ in range(MAX_ROUNDS):
            count, etag = self._read()
            if self._write(max(0, count - 1), etag):
                return
        raise LedgerUnavailable(f"the trigger counter of run {self._run_id} stayed contended")

    def count(self) -> int:
        return self._read()[0]

    def _read(self) -> tuple[int, str | None]:
        try:
            entity = self._table.get_entity(RUN_COUNTER_PARTITION, self._run_id)
        except ResourceNotFoundError:
            return 0, None
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot read the trigger counter of run {self._run_id}") from exc
        return int(entity.get("triggered", 0)), str(entity.metadata["etag"])

    def _write(self, count: int, etag: str | None) -> bool:
        """False when another worker changed the counter since it was read."""
        entity = {"PartitionKey": RUN_COUNTER_PARTITION, "RowKey": self._run_id, "triggered": count}
        try:
            write_on_etag(self._table, entity, etag)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot write the trigger counter of run {self._run_id}") from exc
        return True
