"""The small OData `$filter` dialect the Backup service accepts: `name eq 'value'` joined by `and`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from emulator.recoveryservices.exceptions import InvalidBackupRequest

_CLAUSE = r"\s*([A-Za-z]\w*)\s+eq\s+'([^']*)'\s*"
_WHOLE = re.compile(rf"^{_CLAUSE}(?:\band\b{_CLAUSE})*$", re.IGNORECASE)
_CLAUSES = re.compile(_CLAUSE, re.IGNORECASE)
# The service's own date format in job filters ("2016-01-01 00:00:00 AM", azure-cli sends
# "%Y-%m-%d %I:%M:%S %p"); ISO-8601 is accepted as well.
_FILTER_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?\s*(AM|PM)?\s*(?:Z|[+-]00:?00)?$",
    re.IGNORECASE,
)


def parse_filter(text: str | None, allowed: frozenset[str]) -> dict[str, str]:
    """The clauses of a `$filter` keyed by lower-case property name; 400 when malformed or unknown."""
    if text is None or not text.strip():
        return {}
    if not _WHOLE.match(text):
        raise InvalidBackupRequest(
            f"The $filter '{text}' is malformed. Use clauses of the form name eq 'value' joined by 'and'."
        )
    clauses: dict[str, str] = {}
    for name, value in _CLAUSES.findall(text):
        key = name.lower()
        if key not in allowed:
            supported = ", ".join(sorted(allowed))
            raise InvalidBackupRequest(
                f"The $filter property '{name}' is not supported here. Supported: {supported}."
            )
        clauses[key] = value
    return clauses


def parse_filter_time(value: str) -> datetime:
    """A time of a job filter, as UTC."""
    found = _FILTER_TIME.match(value.strip())
    if not found:
        raise InvalidBackupRequest(
            f"The time '{value}' in $filter is not valid. Use the format 'yyyy-MM-dd hh:mm:ss AM'."
        )
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    meridiem = (found.group(7) or "").upper()
    if meridiem and hour > 12:
        raise InvalidBackupRequest(f"The time '{value}' in $filter mixes a 24-hour clock with AM/PM.")
    if meridiem == "PM" and hour < 12:
        hour += 12
    elif meridiem == "AM" and hour == 12:
        hour = 0
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise InvalidBackupRequest(f"The time '{value}' in $filter is not a valid date: {exc}.") from exc
