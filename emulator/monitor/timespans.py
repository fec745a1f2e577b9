"""ISO 8601 durations and intervals, as the query API's `timespan` and alert payloads use them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from emulator.monitor.columns import ValueMismatch, parse_datetime

# Years and months have no fixed length, and neither the SDK nor the project sends them.
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)

Window = tuple[datetime, datetime]  # naive UTC, inclusive


def parse_duration(text: str) -> timedelta:
    found = _DURATION.match(text.strip())
    parts = {
        key: float(value) for key, value in (found.groupdict() if found else {}).items() if value is not None
    }
    if not parts:
        raise ValueError(f"'{text}' is not an ISO 8601 duration such as PT12H or P1D")
    return timedelta(**parts)


def parse_window(text: str, now: datetime) -> Window:
    """`PT12H` (ending now), `start/end`, `start/duration` or `duration/end`, as naive UTC bounds."""
    now = _naive_utc(now)
    pieces = text.strip().split("/")
    if len(pieces) == 1:
        return now - parse_duration(pieces[0]), now
    if len(pieces) != 2:
        raise ValueError(f"'{text}' is not an ISO 8601 duration or interval")
    first, second = pieces
    if first.upper().startswith("P"):
        end = _instant(second)
        return end - parse_duration(first), end
    start = _instant(first)
    if second.upper().startswith("P"):
        return start, start + parse_duration(second)
    return start, _instant(second)


def format_duration(seconds: float) -> str:
    """`PT10M`, `PT1H30M`, `P1D`: the spelling of alert payloads' `windowSize`."""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    if clock:
        text += "T" + clock
    return text if text != "P" else "PT0S"


def iso_z(moment: datetime) -> str:
    """Seconds precision with a Z, as alert payloads write window bounds."""
    return _naive_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_z_precise(moment: datetime) -> str:
    """Fractional seconds (trailing zeros dropped) with a Z, as Kusto writes a datetime."""
    naive = _naive_utc(moment)
    text = naive.strftime("%Y-%m-%dT%H:%M:%S")
    if naive.microsecond:
        text += "." + f"{naive.microsecond:06d}".rstrip("0")
    return text + "Z"


def _instant(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except ValueMismatch as exc:
        raise ValueError(str(exc)) from exc


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment
