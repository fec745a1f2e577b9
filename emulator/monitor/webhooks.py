"""Every alert notification, and its delivery to the action group's webhook from a background thread.

Timeline callbacks (alert evaluations) run under `emulator.lock`; the webhook receiver may call
back into the emulator, so posting happens on a worker thread that never takes that lock. Retries
are due on the emulated clock: a test steps through them with `emulator.advance()`.
Action group webhooks retry only on 408, 429, 503, 504 and network errors (azure-facts §6).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

from emulator.core.clock import Clock

logger = logging.getLogger(__name__)

STORED = "Stored"  # no webhook configured: kept in the outbox only
PENDING = "Pending"
DELIVERED = "Delivered"
FAILED = "Failed"  # a status that is not retried, or every retry used up
RETRIED_STATUSES = frozenset({408, 429, 503, 504})
# First retry after 10 s, later ones 100 s apart: up to 5 retries.
AZURE_RETRY_DELAYS_S: tuple[float, ...] = (10, 100, 100, 100, 100)
_POLL_S = 0.02


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
class Attempt:
    number: int
    at: datetime
    status: int | None  # None when no HTTP answer came
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at": self.at.isoformat(), "status": self.status, "error": self.error}


@dataclass
class OutboxEntry:
    payload: dict[str, Any]
    url: str | None
    settings: DeliverySettings
    state: str
    next_attempt_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
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


class AlertOutbox:
    def __init__(self, clock: Clock, alive: Callable[[], bool]) -> None:
        self._clock = clock
        self._alive = alive  # false once the emulator was reset and this outbox abandoned
        self._cond = threading.Condition()
        self._entries: list[OutboxEntry] = []
        self._pending: list[OutboxEntry] = []
        self._worker: threading.Thread | None = None

    def add(self, payload: dict[str, Any], url: str | None, settings: DeliverySettings) -> None:
        with self._cond:
            if url is None:
                entry = OutboxEntry(payload, None, settings, STORED)
            else:
                entry = OutboxEntry(payload, url, settings, PENDING, next_attempt_at=self._clock.now())
                self._pending.append(entry)
                self._start_worker()
            self._entries.append(entry)
            self._cond.notify_all()

    def entries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e.to_dict() for e in self._entries]

    def payloads(self) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(e.payload) for e in self._entries]

    def wait_until_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until no delivery is due or running (retries due later do not count)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._busy():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, _POLL_S))
            return True

    def _busy(self) -> bool:
        now = self._clock.now()
        return any(e.in_flight or _is_due(e, now) for e in self._pending)

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="monitor-alert-delivery", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending or not self._alive():
                    self._worker = None
                    return
                now = self._clock.now()
                due = [e for e in self._pending if not e.in_flight and _is_due(e, now)]
                if not due:
                    self._cond.wait(_POLL_S)
                    continue
                for entry in due:
                    entry.in_flight = True
            for entry in due:
                self._attempt(entry)

    def _attempt(self, entry: OutboxEntry) -> None:
        number = len(entry.attempts) + 1
        status, error = _post(entry)
        with self._cond:
            now = self._clock.now()
            entry.attempts.append(Attempt(number, now, status, error))
            entry.in_flight = False
            if status is not None and 200 <= status < 300:
                self._finish(entry, DELIVERED)
            elif (
                status is not None and status not in RETRIED_STATUSES
            ) or number >= entry.settings.max_attempts:
                self._finish(entry, FAILED)
            else:
                entry.next_attempt_at = now + timedelta(seconds=entry.settings.retry_delays_s[number - 1])
            self._cond.notify_all()

    def _finish(self, entry: OutboxEntry, state: str) -> None:
        entry.state = state
        entry.next_attempt_at = None
        if entry in self._pending:
            self._pending.remove(entry)


def _is_due(entry: OutboxEntry, now: datetime) -> bool:
    return entry.next_attempt_at is not None and entry.next_attempt_at <= now


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
