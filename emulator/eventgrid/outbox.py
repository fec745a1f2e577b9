"""Every event the topic published, and its delivery to the webhook from a background thread.

The delivery loop (background thread, retries on the emulated clock) is emulator/core/delivery.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from emulator.core.clock import Clock
from emulator.core.delivery import BackgroundDelivery, DeliveryAttempt
from emulator.eventgrid.settings import CLOUD_EVENTS_SCHEMA, DeliverySettings

logger = logging.getLogger(__name__)

STORED = "Stored"  # published while no delivery URL was configured: kept, never delivered
PENDING = "Pending"
DROPPED = "Dropped"  # a status Event Grid does not retry, or every attempt used up
NOT_RETRIED = frozenset({400, 401, 403, 413})
_SUBSCRIPTION_NAME = "BACKUPWARDEN-EMULATOR"


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


class Outbox(BackgroundDelivery[OutboxRecord]):
    failed_state = DROPPED

    def __init__(self, clock: Clock, alive: Callable[[], bool]) -> None:
        super().__init__(clock, alive, "eventgrid-delivery")
        self._records: list[OutboxRecord] = []

    def add(self, event: dict[str, Any], settings: DeliverySettings) -> OutboxRecord:
        with self._cond:
            if settings.delivery_url is None:
                record = OutboxRecord(event, settings, STORED)
            else:
                record = OutboxRecord(event, settings, PENDING)
                self._enqueue(record)
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

    def _post(self, record: OutboxRecord, number: int) -> tuple[int | None, str | None]:
        return _post(record, delivery_count=number - 1)

    def _gives_up(self, status: int | None) -> bool:
        return status in NOT_RETRIED


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
