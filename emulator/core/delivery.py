"""Webhook deliveries from a background thread, due on the emulated clock: the loop Event Grid and
alert notifications share.

Deliveries never hold `emulator.lock`: the receiver may call back into the emulator while it
handles a delivery. Attempts are due on the emulated clock, so a test steps through retries with
`emulator.advance()` instead of sleeping. Subclasses say how to post one item and when to give up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from emulator.core.clock import Clock

DELIVERED = "Delivered"
_POLL_S = 0.02


@dataclass
class DeliveryAttempt:
    number: int
    at: datetime
    status: int | None  # None when no HTTP answer came (connection error, timeout)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at": self.at.isoformat(), "status": self.status, "error": self.error}


class RetrySchedule(Protocol):
    @property
    def retry_delays_s(self) -> tuple[float, ...]: ...

    @property
    def max_attempts(self) -> int: ...


class Deliverable(Protocol):
    state: str
    next_attempt_at: datetime | None
    attempts: list[DeliveryAttempt]
    in_flight: bool

    @property
    def settings(self) -> RetrySchedule: ...


ItemT = TypeVar("ItemT", bound=Deliverable)


class BackgroundDelivery(Generic[ItemT]):
    """Items waiting for delivery, posted by one worker thread started on demand."""

    failed_state = "Failed"

    def __init__(self, clock: Clock, alive: Callable[[], bool], thread_name: str) -> None:
        self._clock = clock
        self._alive = alive  # false once the emulator was reset and this queue is abandoned
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._pending: list[ItemT] = []
        self._worker: threading.Thread | None = None

    # --- what a subclass says ----------------------------------------------------------------
    def _post(self, item: ItemT, number: int) -> tuple[int | None, str | None]:
        raise NotImplementedError

    def _gives_up(self, status: int | None) -> bool:
        """Whether this answer ends the delivery without a retry (success is handled apart)."""
        raise NotImplementedError

    # --- the shared loop ----------------------------------------------------------------------
    def _enqueue(self, item: ItemT) -> None:
        """Deliver `item` from now on (the caller holds `self._cond`)."""
        item.next_attempt_at = self._clock.now()
        self._pending.append(item)
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._worker.start()

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
        return any(item.in_flight or _is_due(item, now) for item in self._pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending or not self._alive():
                    self._worker = None
                    return
                now = self._clock.now()
                due = [item for item in self._pending if not item.in_flight and _is_due(item, now)]
                if not due:
                    self._cond.wait(_POLL_S)
                    continue
                for item in due:
                    item.in_flight = True
            for item in due:
                self._attempt(item)

    def _attempt(self, item: ItemT) -> None:
        number = len(item.attempts) + 1
        status, error = self._post(item, number)
        with self._cond:
            now = self._clock.now()
            item.attempts.append(DeliveryAttempt(number, now, status, error))
            item.in_flight = False
            if status is not None and 200 <= status < 300:
                self._finish(item, DELIVERED)
            elif self._gives_up(status) or number >= item.settings.max_attempts:
                self._finish(item, self.failed_state)
            else:
                item.next_attempt_at = now + timedelta(seconds=item.settings.retry_delays_s[number - 1])
            self._cond.notify_all()

    def _finish(self, item: ItemT, state: str) -> None:
        item.state = state
        item.next_attempt_at = None
        if item in self._pending:
            self._pending.remove(item)


def _is_due(item: Deliverable, now: datetime) -> bool:
    return item.next_attempt_at is not None and item.next_attempt_at <= now
