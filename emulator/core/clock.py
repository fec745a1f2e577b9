"""The emulated clock: real time scaled by a factor, plus explicit advances.

Every lifecycle (operations, jobs, token-bucket refills, alert evaluation) reads
this clock, so a test can freeze it (scale 0) and step it, and a benchmark can
compress an hour of service behaviour into a minute (scale 60).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = DEFAULT_START, scale: float = 1.0) -> None:
        if scale < 0:
            raise ValueError("time scale must be >= 0")
        self._lock = threading.Lock()
        self._start = start
        self._scale = scale
        self._real_origin = time.monotonic()
        self._offset_s = 0.0

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._real_origin) * self._scale
            return self._start + timedelta(seconds=elapsed + self._offset_s)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset_s += seconds
        return self.now()

    def set(self, start: datetime, scale: float | None = None) -> None:
        with self._lock:
            self._start = start
            self._real_origin = time.monotonic()
            self._offset_s = 0.0
            if scale is not None:
                self._scale = scale

    def real_seconds(self, emulated_seconds: float) -> int:
        """An emulated wait as the whole real seconds a client should sleep (for Retry-After)."""
        if self._scale <= 0:
            return 0
        return max(0, math.ceil(emulated_seconds / self._scale))


class Timeline:
    """Transitions due at emulated times, applied in order when the clock passes them."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        self._seq = itertools.count()

    def at(self, due: datetime, transition: Callable[[datetime], None]) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), transition))

    def settle(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, _, transition = heapq.heappop(self._heap)
            transition(due)

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)
