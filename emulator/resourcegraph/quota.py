"""Resource Graph's per-user query quota: a number of queries per 5-second window (azure-facts §4).

Every answer carries `x-ms-user-quota-remaining` and `x-ms-user-quota-resets-after` (hh:mm:ss);
once the window's queries are spent the service answers 429 until it resets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(seconds=5)


@dataclass
class _Window:
    started: datetime
    used: int = 0


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    remaining: int
    resets_after_s: float  # emulated seconds until the window resets


class UserQuota:
    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def take(self, user: str, now: datetime, per_window: int, enforced: bool) -> QuotaDecision:
        window = self._windows.get(user)
        if window is None or now >= window.started + WINDOW:
            window = self._windows[user] = _Window(started=now)
        resets_after_s = max(0.0, (window.started + WINDOW - now).total_seconds())
        if enforced and window.used >= per_window:
            return QuotaDecision(False, 0, resets_after_s)
        window.used += 1
        return QuotaDecision(True, max(0, per_window - window.used), resets_after_s)


def timespan(seconds: int) -> str:
    """Whole seconds as .NET writes a TimeSpan: `hh:mm:ss`."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"
