"""De-duplication of alert notifications: one claim per (alertId, monitorCondition) in Table Storage.

Action groups retry a notification, so the same (alertId, monitorCondition) can arrive more than
once; its entity says whether it was taken in before. Keys: PartitionKey = sha256 of the alertId
(Table keys forbid the `/` of an alert id), RowKey = the monitor condition. The table is created
by the first notification that finds it missing.

States (the claim mechanics are `claims.py`'s):
- `pending`: a delivery is enqueuing the fired notification; expires after PENDING_TTL. Another
  delivery meanwhile is in flight (NotificationInFlight); after it, the holder is taken to have
  died and its claim is taken over.
- `enqueued`: the work item is on the queue; `recorded`: a resolved notification, noted. Both are
  final: a later delivery is a duplicate.
A claim whose enqueue failed is released (deleted), so the retry is not taken for a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.data.tables import TableClient

from backupwarden.adapters.storage.claims import ClaimTable, Contended, Held, Stored, new_token
from backupwarden.domain.alerts import AlertNotice
from backupwarden.domain.times import utc_now

logger = logging.getLogger(__name__)

PENDING_TTL = timedelta(seconds=30)  # the webhook answers within a second; a claim this old is dead

NotificationClaim = Held  # a pending claim this caller holds


class DedupError(Exception):
    """Base of every de-duplication failure."""


class DedupUnavailable(DedupError):
    """Table Storage failed; the cause is chained."""


class DedupClaimLost(DedupError):
    """The pending claim was taken over (or deleted) before its holder settled it."""


class NotificationInFlight(DedupError):
    """Another delivery of the same notification holds a live pending claim, or won the race for it."""


def dedup_partition_key(alert_id: str) -> str:
    return hashlib.sha256(alert_id.encode("utf-8", errors="surrogatepass")).hexdigest()


class EntryState(StrEnum):
    PENDING = "pending"
    ENQUEUED = "enqueued"
    RECORDED = "recorded"


class AlertDedup:
    def __init__(
        self,
        table: TableClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        pending_ttl: timedelta = PENDING_TTL,
    ) -> None:
        self._claims = ClaimTable(table, unavailable=DedupUnavailable, lost=DedupClaimLost)
        self._clock = clock
        self.pending_ttl = pending_ttl

    @property
    def table_name(self) -> str:
        return self._claims.table_name

    def ensure_table(self) -> None:
        self._claims.ensure_table()

    def claim(self, notice: AlertNotice) -> NotificationClaim | None:
        """Our pending claim on a fired notification, or None when it was taken in before."""
        key = notice.dedup_key[:300]

        def take_over(stored: Stored) -> dict[str, Any] | None:
            if stored.status != EntryState.PENDING:
                return None
            if stored.in_progress_at(self._clock(), EntryState.PENDING.value):
                raise NotificationInFlight(f"{key} is being enqueued by another call")
            logger.warning("took over an expired claim on an alert notification", extra=_key_fields(notice))
            return self._entity(notice, EntryState.PENDING)

        try:
            held = self._claims.claim(lambda: self._entity(notice, EntryState.PENDING), take_over)
        except Contended as exc:
            how = (
                "was claimed concurrently" if exc.stored is not None else "changed under every claim attempt"
            )
            raise NotificationInFlight(f"notification {key} {how}") from None
        return held if isinstance(held, Held) else None

    def record(self, notice: AlertNotice) -> bool:
        """Note a notification that is no work (resolved); False when it was noted before."""
        noted = self._claims.insert(self._entity(notice, EntryState.RECORDED))
        return isinstance(noted, Held)

    def mark_enqueued(self, claim: NotificationClaim) -> None:
        self._claims.settle(claim, {"status": EntryState.ENQUEUED.value, "updated": self._clock()})

    def release(self, claim: NotificationClaim) -> None:
        """Delete the pending claim (its work item was not enqueued), so a retry takes it in afresh."""
        self._claims.delete(claim)

    def _entity(self, notice: AlertNotice, state: EntryState) -> dict[str, Any]:
        now = self._clock()
        return {
            "PartitionKey": dedup_partition_key(notice.alert_id),
            "RowKey": notice.monitor_condition,
            "alert_id": notice.alert_id,
            "rule": notice.rule,
            "monitoring_service": notice.monitoring_service,
            "monitor_condition": notice.monitor_condition,
            "fired_at": notice.fired_at.isoformat(),  # text: Table dates stop at year 1601
            "status": state.value,
            "updated": now,
            "expires": now + self.pending_ttl if state is EntryState.PENDING else now,
            "token": new_token(),
        }


def _key_fields(notice: AlertNotice) -> dict[str, str]:
    return {"alert_id": notice.alert_id, "monitor_condition": notice.monitor_condition}
