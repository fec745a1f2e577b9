"""Taking in alert notifications: read the body, de-duplicate, enqueue a fired alert, record a resolved one.

Action groups retry a notification (on 408, 429, 503, 504 and network errors, up to 5 times), so
the same (alertId, monitorCondition) can arrive more than once. Each is taken in once, through one
Table entity per notification: PartitionKey = sha256 of the alertId (Table keys forbid the `/` of
an alert id), RowKey = the monitor condition.

Crash safety ("save in progress first, delete on failure", with expiry):
1. claim: create the entity as `pending` (expires after PENDING_TTL). A create conflict means
   another delivery got there first: `enqueued`/`recorded` -> duplicate (202); `pending` and not
   expired -> that delivery is still enqueuing (503: the action group retries, and the retry then
   sees `enqueued`); `pending` and expired -> its holder died, take it over (ETag-conditioned).
2. enqueue the work item. If that fails, delete the claim and answer 503, so the action group's
   retry is not mistaken for a duplicate. If the process dies before the delete, the claim
   expires and the next retry takes it over.
3. mark the entity `enqueued`.
A notification may therefore be enqueued twice (a crash after step 2, a lost answer to a send
that succeeded, an expired claim taken over while its holder still runs). That is harmless:
remediation acts on a VM only through the ledger, one action per (VM, action, day).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.domain.alerts import AlertNotice, InvalidAlert, read_alert
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_WORK_ITEM_BYTES = 48_000  # a queue message holds 64 KiB, and base64 makes 4 bytes of 3
MAX_ID_LENGTH = 1024  # real alert ids and rule names are a few hundred characters at most
PENDING_TTL = timedelta(seconds=30)  # the webhook answers within a second; a claim this old is dead
FIRED = "Fired"
_CLAIM_ROUNDS = 3


class IntakeStatus(StrEnum):
    ACCEPTED = "accepted"  # fired: a remediation work item is on the queue
    DUPLICATE = "duplicate"  # this notification was taken in before
    RECORDED = "recorded"  # resolved: noted, nothing to do


class _EntryState(StrEnum):
    PENDING = "pending"
    ENQUEUED = "enqueued"
    RECORDED = "recorded"


class IntakeUnavailable(Exception):
    """Table or queue storage failed (the cause is chained); answered 503, which the action group retries."""


class AlertInFlight(Exception):
    """Another delivery of the same notification is being enqueued right now; answered 503 (retried)."""


def read_alert_body(body: bytes) -> AlertNotice:
    """The notification a request body carries; InvalidAlert says precisely why not (answered 400)."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidAlert(f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} (256 KiB)")
    if not body.strip():
        raise InvalidAlert("the body is empty; expected a JSON alert notification (common alert schema)")
    payload = _json(body)
    try:
        notice = read_alert(payload)
    except RecursionError:  # JSON nested just shallow enough to parse, too deep to print in a message
        raise InvalidAlert("the body is nested too deeply") from None
    _check_storable(notice)
    return notice


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidAlert(f"the body is not JSON: {exc.msg} at {where}") from None
    except UnicodeDecodeError:
        raise InvalidAlert("the body is not JSON: it is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:  # e.g. integers too long, nesting too deep
        raise InvalidAlert(f"the body is not JSON this webhook reads: {str(exc)[:200]}") from None


def _check_storable(notice: AlertNotice) -> None:
    """What the de-duplication table and the remediation queue will hold must fit them."""
    for value, where in ((notice.alert_id, "alertId"), (notice.rule, "alertRule")):
        if len(value) > MAX_ID_LENGTH:
            raise InvalidAlert(f"data.essentials.{where} is longer than {MAX_ID_LENGTH} characters")
    texts = [notice.alert_id, notice.rule, *notice.target_ids]
    texts += [part for pair in notice.dimensions for part in pair]
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape half a surrogate pair; storage refuses such text
        raise InvalidAlert("the alert holds text that is not valid Unicode (an unpaired surrogate)") from None
    if notice.monitor_condition == FIRED:
        size = len(RemediationWorkItem.from_notice(notice).to_json())
        if size > MAX_WORK_ITEM_BYTES:
            raise InvalidAlert(
                f"the alert's dimensions and target ids take {size} bytes as a work item; at most "
                f"{MAX_WORK_ITEM_BYTES} fit one queue message"
            )


def dedup_partition_key(alert_id: str) -> str:
    return hashlib.sha256(alert_id.encode("utf-8", errors="surrogatepass")).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlertIntake:
    def __init__(
        self,
        dedup_table: TableClient,
        queue: QueueClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        pending_ttl: timedelta = PENDING_TTL,
    ) -> None:
        self._table = dedup_table
        self._queue = queue
        self._clock = clock
        self._pending_ttl = pending_ttl

    def receive(self, notice: AlertNotice) -> IntakeStatus:
        """Takes one notification in; raises IntakeUnavailable or AlertInFlight (both worth a retry)."""
        if notice.monitor_condition != FIRED:
            created = self._create(self._entity(notice, _EntryState.RECORDED)) is not None
            status = IntakeStatus.RECORDED if created else IntakeStatus.DUPLICATE
            _log(notice, status)
            return status
        etag = self._claim(notice)
        if etag is None:
            _log(notice, IntakeStatus.DUPLICATE)
            return IntakeStatus.DUPLICATE
        self._enqueue_or_release(notice, etag)
        self._mark_enqueued(notice, etag)
        _log(notice, IntakeStatus.ACCEPTED)
        return IntakeStatus.ACCEPTED

    # --- the claim ---------------------------------------------------------------------------
    def _claim(self, notice: AlertNotice) -> str | None:
        """The ETag of our pending claim, or None when the notification was taken in before."""
        for _ in range(_CLAIM_ROUNDS):
            etag = self._create(self._entity(notice, _EntryState.PENDING))
            if etag is not None:
                return etag
            existing = self._get(notice)
            if existing is None:
                continue  # released between our create and our read: create again
            if existing.get("status") != _EntryState.PENDING:
                return None
            if _as_utc(existing["expires"]) > self._clock():
                raise AlertInFlight(f"{notice.dedup_key[:300]} is being enqueued by another call")
            etag = self._take_over(notice, existing)
            if etag is not None:
                return etag
        raise AlertInFlight(f"notification {notice.dedup_key[:300]} changed under every claim attempt")

    def _take_over(self, notice: AlertNotice, existing: Any) -> str | None:
        logger.warning("took over an expired claim on an alert notification", extra=_fields(notice))
        try:
            result = self._table.update_entity(
                self._entity(notice, _EntryState.PENDING),
                mode=UpdateMode.REPLACE,
                etag=existing.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError:
            return None
        except ResourceModifiedError:
            raise AlertInFlight(f"notification {notice.dedup_key[:300]} was claimed concurrently") from None
        except AzureError as exc:
            raise IntakeUnavailable("cannot claim the alert notification") from exc
        return str(result["etag"])

    # --- the work ----------------------------------------------------------------------------
    def _enqueue_or_release(self, notice: AlertNotice, etag: str) -> None:
        try:
            self._send(RemediationWorkItem.from_notice(notice).to_json())
        except AzureError as exc:
            self._release(notice, etag)
            raise IntakeUnavailable("cannot enqueue the remediation work item") from exc

    def _send(self, message: str) -> None:
        try:
            self._queue.send_message(message)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._queue.create_queue()
            self._queue.send_message(message)

    def _release(self, notice: AlertNotice, etag: str) -> None:
        try:
            self._table.delete_entity(
                dedup_partition_key(notice.alert_id),
                notice.monitor_condition,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError:
            logger.warning(
                "cannot release the claim on an alert notification; it expires",
                extra={**_fields(notice), "expires_in_s": self._pending_ttl.total_seconds()},
                exc_info=True,
            )

    def _mark_enqueued(self, notice: AlertNotice, etag: str) -> None:
        entity = {
            "PartitionKey": dedup_partition_key(notice.alert_id),
            "RowKey": notice.monitor_condition,
            "status": _EntryState.ENQUEUED.value,
            "updated": self._clock(),
        }
        try:
            self._table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except AzureError:
            # The work item is on the queue; at worst a retry after the claim expired enqueues it again.
            logger.warning("cannot mark an alert notification enqueued", extra=_fields(notice), exc_info=True)

    # --- storage -------------------------------------------------------------------------------
    def _entity(self, notice: AlertNotice, state: _EntryState) -> dict[str, Any]:
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
            "expires": now + self._pending_ttl if state is _EntryState.PENDING else now,
        }

    def _create(self, entity: dict[str, Any]) -> str | None:
        """The new entity's ETag, or None when it already exists."""
        try:
            try:
                return str(self._table.create_entity(entity)["etag"])
            except ResourceNotFoundError:  # the table itself: created on first use
                with contextlib.suppress(ResourceExistsError):
                    self._table.create_table()
                return str(self._table.create_entity(entity)["etag"])
        except ResourceExistsError:
            return None
        except AzureError as exc:
            raise IntakeUnavailable(f"cannot record the notification in {self._table.table_name}") from exc

    def _get(self, notice: AlertNotice) -> Any:
        try:
            return self._table.get_entity(dedup_partition_key(notice.alert_id), notice.monitor_condition)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise IntakeUnavailable("cannot read the alert notification's record") from exc


def build_alert_intake(settings: Settings, clients: AzureClients) -> AlertIntake:
    return AlertIntake(clients.alert_dedup_table(), clients.work_queue(settings.remediation_queue))


def _fields(notice: AlertNotice) -> dict[str, str]:
    return {
        "alert_id": notice.alert_id,
        "alert_rule": notice.rule,
        "monitor_condition": notice.monitor_condition,
        "monitoring_service": notice.monitoring_service,
    }


def _log(notice: AlertNotice, status: IntakeStatus) -> None:
    logger.info("alert notification taken in", extra={**_fields(notice), "status": status.value})


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
