"""What every trigger handler shares: the process's settings and clients, reading a queue message's
work item, and recording what could not be handled.

Settings are read from the app settings on every invocation (cheap; the host may change them on a
restart only); the SDK clients for them are built once per process by the composition root.
A message no handler can finish becomes a `failed` outcome in the outbox, so it reaches Log
Analytics like every other decision: a malformed one at once (a retry cannot fix it), one the
queue gave up on from its poison queue.

Storage (tables and queues) unreachable is mapped here, once for every trigger: the trigger raises
StorageUnavailable, so the host retries the delivery (Event Grid and the queues redeliver, a timer
runs again), after one error line instead of the SDK's traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import azure.functions as func

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.storage.alert_dedup import DedupUnavailable
from backupwarden.adapters.storage.ledger import LedgerUnavailable
from backupwarden.adapters.storage.outbox import OutboxUnavailable
from backupwarden.adapters.storage.queues import QueueError
from backupwarden.app import build_action_recorder, shared_clients
from backupwarden.domain.records import Outcome
from backupwarden.flows.recorder import unhandled_message
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")

GAVE_UP = "gave up after the queue's retries (poison queue)"

STORAGE_FAILURES = (LedgerUnavailable, OutboxUnavailable, DedupUnavailable, QueueError)


class StorageUnavailable(Exception):
    """Storage could not be reached; raised so the host retries the delivery (nothing was acknowledged)."""


@contextmanager
def retried_if_storage_is_down(delivery: str) -> Iterator[None]:
    """Decorates a trigger (under the host's decorator): a storage failure in it becomes one error
    line and StorageUnavailable, whose message names the cause class and says that `delivery` will
    be retried."""
    try:
        yield
    except STORAGE_FAILURES as exc:
        cause = type(root_cause(exc)).__name__
        failed = exc.step if isinstance(exc, QueueError) else str(exc)  # a step names no host
        message = f"storage is unavailable ({cause}: {failed}); the {delivery} will be retried"
        logger.error(message, extra={"cause": cause, "detail": str(root_cause(exc))[:500]})
        # from None: the host logs this short message, not the chain of SDK frames below it
        raise StorageUnavailable(message) from None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost chained cause (the SDK's error under an adapter's)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


@dataclass(frozen=True)
class Context:
    settings: Settings
    clients: AzureClients

    def record(self, outcomes: list[Outcome], *, source: str, dry_run: bool | None = None) -> None:
        """The decisions into the outbox (BackupAutomationActions_CL); dry_run defaults to the setting."""
        dry = self.settings.dry_run if dry_run is None else dry_run
        build_action_recorder(self.settings, self.clients).record(outcomes, source=source, dry_run=dry)

    def record_unhandled(
        self,
        message: func.QueueMessage,
        outcomes: list[Outcome],
        *,
        source: str,
        log_message: str,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        """Outcomes of a message no handler finished: logged as errors, then recorded."""
        for outcome in outcomes:
            logger.error(log_message, extra={**outcome.to_dict(), "message_id": message.id, **extra})
        self.record(outcomes, source=source, dry_run=dry_run)


def context() -> Context:
    """The app settings as the host sets them, and this process's clients for them."""
    settings = Settings.from_env()
    return Context(settings, shared_clients(settings))


def message_text(message: func.QueueMessage) -> str:
    """The body as text; undecodable bytes are replaced, so the parser reports what is wrong."""
    return message.get_body().decode("utf-8", errors="replace")


def work_item(
    message: func.QueueMessage,
    parse: Callable[[str], ItemT],
    invalid: type[ValueError],
    *,
    what: str,
    action: str,
    source: str,
) -> ItemT | None:
    """The message's work item; None for a malformed one, which is logged and recorded as a `failed`
    `action` with the reason (acknowledged, not retried: redelivery cannot make it well-formed)."""
    try:
        return parse(message_text(message))
    except invalid as exc:
        logger.error(f"dropped malformed {what}", extra={"message_id": message.id, "reason": str(exc)})
        outcome = unhandled_message(action, f"malformed {what}: {exc}", malformed=True)
        context().record([outcome], source=source)
        return None


def given_up_item(
    message: func.QueueMessage, parse: Callable[[str], ItemT], invalid: type[ValueError]
) -> tuple[ItemT | None, str]:
    """The work item of a message the queue gave up on (None when the body is not one), and the
    reason to record."""
    try:
        return parse(message_text(message)), GAVE_UP
    except invalid as exc:
        return None, f"{GAVE_UP}; not a work item: {exc}"
