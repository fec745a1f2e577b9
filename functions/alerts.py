"""The alert webhook: action groups POST alert notifications (common alert schema) here.

When BACKUPWARDEN_WEBHOOK_AUDIENCE is set (the deployment's default, a secure webhook), the handler
requires the action group's Entra ID token (backupwarden/adapters/azure/webhook_token.py) and the
function takes no key (auth level ANONYMOUS), so the deployment never lists one. Without it, auth level
FUNCTION: the Functions host checks the function key (`code` query parameter or `x-functions-key`
header) before this code runs, and answers a missing or wrong key with 401 itself. Both read the same
setting, so the endpoint is never open: no audience, a key; an audience, a token.

Answers (JSON bodies `{"status": …, "reason"?: …}`):
- 202 accepted (fired: a remediation work item is queued), duplicate (taken in before), recorded
  (resolved: noted, nothing to do). Only the de-duplication table and the queue are called, so
  the answer comes well within a second.
- 400 rejected: not JSON, not the common alert schema, an unsupported monitoringService, missing or
  malformed essentials, a body over 256 KiB. Action groups do not retry a 400, so each one is
  recorded as a `failed` remediation in BackupAutomationActions_CL (the reason, and the alert id and
  rule name when readable); when that record cannot be stored, the answer is a 503 instead.
- 401 unauthorized: the secure-webhook token is missing or invalid.
- 503 unavailable (with Retry-After): storage or the tenant's signing keys could not be reached, or
  another delivery of the same notification is mid-way; action groups retry a 503. Its reason is
  generic; the detail (hosts, ports, SDK errors) is logged, not answered.
"""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from backupwarden.adapters.azure.webhook_token import SigningKeysUnavailable, WebhookUnauthorized
from backupwarden.adapters.storage.outbox import OutboxUnavailable
from backupwarden.app import build_alert_intake, build_webhook_validator
from backupwarden.domain.alerts import InvalidAlert
from backupwarden.flows.remediation.intake import (
    AlertInFlight,
    IntakeUnavailable,
    read_alert_body,
    rejected_notice_record,
)
from functions.context import Context, context

logger = logging.getLogger(__name__)

bp = func.Blueprint()

RETRY_AFTER_S = 30


def webhook_auth_level() -> func.AuthLevel:
    """ANONYMOUS for a secure webhook (its token is checked in the handler), else FUNCTION (the key)."""
    secure = os.environ.get("BACKUPWARDEN_WEBHOOK_AUDIENCE", "").strip()
    return func.AuthLevel.ANONYMOUS if secure else func.AuthLevel.FUNCTION


@bp.route(route="alerts", methods=["POST"], auth_level=webhook_auth_level())
def alert_webhook(req: func.HttpRequest) -> func.HttpResponse:
    ctx = context()
    try:
        validator = build_webhook_validator(ctx.settings)
        if validator is not None:  # a secure webhook: BACKUPWARDEN_WEBHOOK_AUDIENCE is set
            validator.validate(req.headers.get("Authorization"))
        notice = read_alert_body(req.get_body())
        status = build_alert_intake(ctx.settings, ctx.clients).receive(notice)
    except WebhookUnauthorized as exc:
        logger.warning("alert webhook: unauthorized", extra={"reason": exc.reason})
        return _answer(401, "unauthorized", exc.reason, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    except InvalidAlert as exc:
        return _rejected(ctx, req.get_body(), exc)
    except SigningKeysUnavailable as exc:
        return _unavailable("the tenant's token signing keys cannot be fetched right now", exc)
    except IntakeUnavailable as exc:
        return _unavailable("storage is unavailable right now", exc)
    except AlertInFlight as exc:
        return _unavailable("another delivery of this notification is being taken in", exc)
    return _answer(202, status.value)


def _rejected(ctx: Context, body: bytes, exc: InvalidAlert) -> func.HttpResponse:
    """A 400, which the action group does not resend: recorded as `failed` first, so the notification
    is not lost without a trace; when that record cannot be stored, a 503 asks for the body again."""
    logger.warning("alert webhook: rejected", extra={"reason": str(exc)})
    try:
        ctx.record([rejected_notice_record(body, exc)], source="Alert")
    except OutboxUnavailable as unstored:
        return _unavailable("storage is unavailable right now", unstored)
    return _answer(400, "rejected", str(exc))


def _unavailable(reason: str, exc: Exception) -> func.HttpResponse:
    """A 503 the action group retries; the detail (hosts, ports, SDK messages) goes to the logs only."""
    logger.warning("alert webhook: unavailable", extra={"reason": str(exc)}, exc_info=True)
    return _answer(503, "unavailable", reason, {"Retry-After": str(RETRY_AFTER_S)})


def _answer(
    status_code: int, status: str, reason: str | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    body = {"status": status} if reason is None else {"status": status, "reason": reason}
    return func.HttpResponse(
        json.dumps(body), status_code=status_code, headers=headers, mimetype="application/json"
    )
