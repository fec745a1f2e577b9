"""Taking in alert notifications: read the body, de-duplicate, enqueue a fired alert, record a resolved one.

Action groups retry a notification (on 408, 429, 503, 504 and network errors, up to 5 times), so
the same (alertId, monitorCondition) can arrive more than once; each is taken in once, through the
de-duplication table (backupwarden/adapters/storage/alert_dedup.py).

Crash safety ("save in progress first, delete on failure", with expiry):
1. claim the notification as `pending`. Taken in before -> duplicate (202); another delivery is
   still enqueuing it -> 503 (the action group retries, and the retry then sees `enqueued`); a
   pending claim past its expiry is taken over (its holder died).
2. enqueue the work item. If that fails, release the claim and answer 503, so the action group's
   retry is not mistaken for a duplicate. If the process dies before the release, the claim
   expires and the next retry takes it over.
3. mark the claim `enqueued`.
A notification may therefore be enqueued twice (a crash after step 2, a lost answer to a send
that succeeded, an expired claim taken over while its holder still runs). That is harmless:
remediation acts on a VM only through the ledger, one action per (VM, action, day).
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import Any

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.storage.alert_dedup import (
    AlertDedup,
    DedupError,
    DedupUnavailable,
    NotificationClaim,
    NotificationInFlight,
)
from backupwarden.adapters.storage.queues import WorkQueue
from backupwarden.domain.alerts import AlertNotice, InvalidAlert, read_alert
from backupwarden.domain.records import Outcome
from backupwarden.flows.recorder import unhandled_message
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.remediation.worker import ACTION

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_WORK_ITEM_BYTES = 48_000  # a queue message holds 64 KiB, and base64 makes 4 bytes of 3
MAX_ID_LENGTH = 1024  # real alert ids and rule names are a few hundred characters at most
FIRED = "Fired"
MAX_QUOTED = 200  # how much of an alert id, a rule name or a reason a rejection's record quotes


class IntakeStatus(StrEnum):
    ACCEPTED = "accepted"  # fired: a remediation work item is on the queue
    DUPLICATE = "duplicate"  # this notification was taken in before
    RECORDED = "recorded"  # resolved: noted, nothing to do


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


def rejected_notice_record(body: bytes, error: InvalidAlert) -> Outcome:
    """The `failed` record of a body answered 400: the action group does not resend it, so this record
    is all that is left of it. It quotes the alert id and rule name when they are readable, and no
    more of the body."""
    alert_id, rule = _readable_ids(body)
    known = f" (alert {alert_id or 'unknown'}, rule {rule or 'unknown'})"
    reason = f"rejected alert notification{known}: {str(error)[:MAX_QUOTED]}"
    return unhandled_message(ACTION, reason, malformed=True)


def _readable_ids(body: bytes) -> tuple[str, str]:
    """data.essentials.alertId and alertRule when the body is JSON holding them as text, else ''."""
    if len(body) > MAX_BODY_BYTES:
        return "", ""
    try:
        essentials = json.loads(body)["data"]["essentials"]
        values = (essentials.get("alertId"), essentials.get("alertRule"))
    except (ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return "", ""
    alert_id, rule = (value[:MAX_QUOTED] if isinstance(value, str) else "" for value in values)
    return alert_id, rule


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


class AlertIntake:
    def __init__(self, dedup: AlertDedup, queue: WorkQueue) -> None:
        self._dedup = dedup
        self._queue = queue

    def receive(self, notice: AlertNotice) -> IntakeStatus:
        """Takes one notification in; raises IntakeUnavailable or AlertInFlight (both worth a retry)."""
        try:
            status = self._take_in(notice)
        except DedupUnavailable as exc:
            raise IntakeUnavailable(
                f"cannot record the notification in {self._dedup.table_name}: {exc}"
            ) from exc
        except NotificationInFlight as exc:
            raise AlertInFlight(str(exc)) from exc
        logger.info("alert notification taken in", extra={**_fields(notice), "status": status.value})
        return status

    def _take_in(self, notice: AlertNotice) -> IntakeStatus:
        if notice.monitor_condition != FIRED:
            return IntakeStatus.RECORDED if self._dedup.record(notice) else IntakeStatus.DUPLICATE
        claim = self._dedup.claim(notice)
        if claim is None:
            return IntakeStatus.DUPLICATE
        self._enqueue_or_release(notice, claim)
        self._mark_enqueued(notice, claim)
        return IntakeStatus.ACCEPTED

    def _enqueue_or_release(self, notice: AlertNotice, claim: NotificationClaim) -> None:
        try:
            self._queue.send(RemediationWorkItem.from_notice(notice).to_json())
        except AzureCallError as exc:
            self._release(notice, claim)
            raise IntakeUnavailable("cannot enqueue the remediation work item") from exc

    def _release(self, notice: AlertNotice, claim: NotificationClaim) -> None:
        try:
            self._dedup.release(claim)
        except DedupError:
            logger.warning(
                "cannot release the claim on an alert notification; it expires",
                extra={**_fields(notice), "expires_in_s": self._dedup.pending_ttl.total_seconds()},
                exc_info=True,
            )

    def _mark_enqueued(self, notice: AlertNotice, claim: NotificationClaim) -> None:
        try:
            self._dedup.mark_enqueued(claim)
        except DedupError:
            # The work item is on the queue; at worst a retry after the claim expired enqueues it again.
            logger.warning("cannot mark an alert notification enqueued", extra=_fields(notice), exc_info=True)


def _fields(notice: AlertNotice) -> dict[str, str]:
    return {
        "alert_id": notice.alert_id,
        "alert_rule": notice.rule,
        "monitor_condition": notice.monitor_condition,
        "monitoring_service": notice.monitoring_service,
    }
