"""Time in one place: the clock, UTC normalisation and the ISO-8601 reading every flow shares.

Azure answers times as ISO-8601 with `Z` or an offset, sometimes without a zone (taken as UTC),
and the SDKs sometimes hand over `datetime` objects already; everything inside is aware UTC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def utc_now() -> datetime:
    """The wall clock; flows take it as a `now` callable so tests and the emulator can replace it."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC time; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(raw: Any) -> datetime:
    """A `datetime`, or an ISO-8601 text (`Z` allowed), as aware UTC; ValueError when it is neither.

    OverflowError (an offset pushing a time past year 1 or 9999) is reported as ValueError too.
    """
    if isinstance(raw, datetime):
        return as_utc(raw)
    try:
        return as_utc(datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
    except OverflowError:
        raise ValueError(f"time out of range: {str(raw)[:60]!r}") from None


def parse_optional_time(raw: Any) -> datetime | None:
    """As `parse_time`, with None or an empty text read as no time."""
    return None if raw is None or raw == "" else parse_time(raw)


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with the `Z` suffix, as Azure writes times."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Deadline:
    """A run's time budget: `budget` from `started`, a reading of `clock` (monotonic seconds).

    Monotonic rather than the wall clock: the host stops a run after its functionTimeout of real
    time, whatever the system clock does meanwhile.
    """

    started: float
    budget: timedelta
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def start(cls, budget: timedelta, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """A deadline `budget` from now."""
        return cls(clock(), budget, clock)

    def remaining(self) -> timedelta:
        """What is left of the budget, never below zero."""
        elapsed = timedelta(seconds=self.clock() - self.started)
        return max(timedelta(0), self.budget - elapsed)

    def near_end(self, margin: timedelta) -> bool:
        """At most `margin` left: time to stop taking new work and hand the rest on."""
        return self.remaining() <= margin
