"""Every event the topic published, and its delivery to the webhook from a background thread.

Deliveries never hold `emulator.lock`: the receiver may call back into the emulator while it
handles an event. Attempts are due on the emulated clock, so a test steps through retries
with `emulator.advance()` instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

from emulator.core.clock import Clock
from emulator.eventgrid.settings import CLOUD_EVENTS_SCHEMA, DeliverySettings

logger = logging.getLogger(__name__)

STORED = "Stored"  # published while no delivery URL was configured: kept, never delivered
PENDING = "Pending"
DELIVERED = "Delivered"
DROPPED = "Dropped"  # a status Event Grid does not retry, or every attempt used up
NOT_RETRIED = frozenset({400, 401, 403, 413})
_POLL_S = 0.02
_SUBSCRIPTION_NAME = "BACKUPWARDEN-EMULATOR"


@dataclass
class DeliveryAttempt:
    number: int
    at: datetime
    status: int | None  # None when no HTTP answer came (connection error, timeout)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at": self.at.isoformat(), "status": self.status, "error": self.error}


@dataclass
class OutboxRecord:
    event: dict[str, Any]
    settings: DeliverySettings
    state: str
    next_attempt_at: datetime | None = None
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    in_flight: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "schema": self.settings.schema,
            "state": self.state,
            "delivery_url": self.settings.delivery_url,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "attempts": [a.to_dict() for a in self.attempts],
        }


class Outbox:
    def __init__(self, clock: Clock, alive: Callable[[], bool]) -> None:
        self._clock = clock
        self._alive = alive  # false once the emulator was reset and this outbox is abandoned
        self._cond = threading.Condition()
        self._records: list[OutboxRecord] = []
        self._pending: list[OutboxRecord] = []
        self._worker: threading.Thread | None = None

    def add(self, event: dict[str, Any], settings: DeliverySettings) -> OutboxRecord:
        with self._cond:
            if settings.delivery_url is None:
                record = OutboxRecord(event, settings, STORED)
            else:
                record = OutboxRecord(event, settings, PENDING, next_attempt_at=self._clock.now())
                self._pending.append(record)
                self._start_worker()
            self._records.append(record)
            self._cond.notify_all()
            return record

    def records(self) -> list[dict[str, Any]]:
        with self._cond:
            return [r.to_dict() for r in self._records]

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [r.event for r in self._records]

    def clear(self) -> None:
        with self._cond:
            self._records.clear()
            self._pending.clear()
            self._cond.notify_all()

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
        return any(r.in_flight or _is_due(r, now) for r in self._pending)

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="eventgrid-delivery", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending or not self._alive():
                    self._worker = None
                    return
                now = self._clock.now()
                due = [r for r in self._pending if not r.in_flight and _is_due(r, now)]
                if not due:
                    self._cond.wait(_POLL_S)
                    continue
                for record in due:
                    record.in_flight = True
            for record in due:
                self._attempt(record)

    def _attempt(self, record: OutboxRecord) -> None:
        number = len(record.attempts) + 1
        status, error = _post(record, delivery_count=number - 1)
        with self._cond:
            now = self._clock.now()
            record.attempts.append(DeliveryAttempt(number, now, status, error))
            record.in_flight = False
            if status is not None and 200 <= status < 300:
                self._finish(record, DELIVERED)
            elif status in NOT_RETRIED or number >= record.settings.max_attempts:
                self._finish(record, DROPPED)
            else:
                record.next_attempt_at = now + timedelta(seconds=record.settings.retry_delays_s[number - 1])
            self._cond.notify_all()

    def _finish(self, record: OutboxRecord, state: str) -> None:
        record.state = state
        record.next_attempt_at = None
        if record in self._pending:
            self._pending.remove(record)


def _is_due(record: OutboxRecord, now: datetime) -> bool:
    return record.next_attempt_at is not None and record.next_attempt_at <= now


def _post(record: OutboxRecord, delivery_count: int) -> tuple[int | None, str | None]:
    """One webhook POST of the event as a one-element JSON array."""
    settings = record.settings
    assert settings.delivery_url is not None
    cloud = settings.schema == CLOUD_EVENTS_SCHEMA
    headers = {
        "Content-Type": ("application/cloudevents-batch+json" if cloud else "application/json")
        + "; charset=utf-8",
        "aeg-event-type": "Notification",
        "aeg-subscription-name": _SUBSCRIPTION_NAME,
        "aeg-delivery-count": str(delivery_count),
        "aeg-metadata-version": "1",
    }
    if "dataVersion" in record.event:
        headers["aeg-data-version"] = str(record.event["dataVersion"])
    try:
        answer = requests.post(
            settings.delivery_url,
            data=json.dumps([record.event]).encode(),
            headers=headers,
            timeout=settings.timeout_s,
            verify=settings.verify_tls,
        )
    except requests.RequestException as exc:
        logger.info("event delivery to %s failed: %s", settings.delivery_url, exc)
        return None, f"{type(exc).__name__}: {exc}"
    return answer.status_code, None if answer.ok else answer.text[:500]
