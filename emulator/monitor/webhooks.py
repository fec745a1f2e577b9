"""Every alert notification, and its delivery to the action group's webhook from a background thread.

Timeline callbacks (alert evaluations) run under `emulator.lock`; the webhook receiver may call
back into the emulator, so posting happens on a worker thread that never takes that lock. Retries
are due on the emulated clock: a test steps through them with `emulator.advance()`.
Action group webhooks retry only on 408, 429, 503, 504 and network errors (azure-facts §6).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from emulator.core.clock import Clock
from emulator.core.delivery import BackgroundDelivery, DeliveryAttempt

logger = logging.getLogger(__name__)

STORED = "Stored"  # no webhook configured: kept in the outbox only
PENDING = "Pending"
FAILED = "Failed"  # a status that is not retried, or every retry used up
RETRIED_STATUSES = frozenset({408, 429, 503, 504})
# First retry after 10 s, later ones 100 s apart: up to 5 retries.
AZURE_RETRY_DELAYS_S: tuple[float, ...] = (10, 100, 100, 100, 100)


@dataclass(frozen=True)
class DeliverySettings:
    webhook_url: str | None = None
    verify: bool | str = True  # or the path of a CA bundle
    retry_delays_s: tuple[float, ...] = AZURE_RETRY_DELAYS_S  # emulated seconds before each retry
    timeout_s: float = 10.0

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_s) + 1


@dataclass
class OutboxEntry:
    payload: dict[str, Any]
    url: str | None
    settings: DeliverySettings
    state: str
    next_attempt_at: datetime | None = None
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    in_flight: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": copy.deepcopy(self.payload),
            "delivery": {
                "url": self.url,
                "state": self.state,
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
                "attempts": [a.to_dict() for a in self.attempts],
            },
        }


class AlertOutbox(BackgroundDelivery[OutboxEntry]):
    failed_state = FAILED

    def __init__(self, clock: Clock, alive: Callable[[], bool]) -> None:
        super().__init__(clock, alive, "monitor-alert-delivery")
        self._entries: list[OutboxEntry] = []

    def add(self, payload: dict[str, Any], url: str | None, settings: DeliverySettings) -> None:
        with self._cond:
            if url is None:
                entry = OutboxEntry(payload, None, settings, STORED)
            else:
                entry = OutboxEntry(payload, url, settings, PENDING)
                self._enqueue(entry)
            self._entries.append(entry)
            self._cond.notify_all()

    def entries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e.to_dict() for e in self._entries]

    def payloads(self) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(e.payload) for e in self._entries]

    def _post(self, entry: OutboxEntry, number: int) -> tuple[int | None, str | None]:
        return _post(entry)

    def _gives_up(self, status: int | None) -> bool:
        return status is not None and status not in RETRIED_STATUSES


def _post(entry: OutboxEntry) -> tuple[int | None, str | None]:
    assert entry.url is not None
    try:
        answer = requests.post(
            entry.url, json=entry.payload, timeout=entry.settings.timeout_s, verify=entry.settings.verify
        )
    except requests.RequestException as exc:
        logger.info("alert delivery to %s failed: %s", entry.url, exc)
        return None, f"{type(exc).__name__}: {exc}"
    return answer.status_code, None if answer.ok else answer.text[:500]
