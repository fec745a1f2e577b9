"""Column types of DCR stream declarations and Log Analytics tables, and how a JSON value becomes one."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Kusto type -> DuckDB storage type.
STORAGE_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "dynamic": "JSON",
    "guid": "UUID",
}
# DCR stream declarations spell bool "boolean"; tables spell it "bool".
_ALIASES = {"boolean": "bool"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of STORAGE_TYPES

    @property
    def storage_type(self) -> str:
        return STORAGE_TYPES[self.type]


def column_type(name: str) -> str:
    """The table type for a declared type name; ValueError for a name neither service knows."""
    normalized = _ALIASES.get(name.lower(), name.lower())
    if normalized not in STORAGE_TYPES:
        known = ", ".join(sorted({*STORAGE_TYPES, *_ALIASES}))
        raise ValueError(f"'{name}' is not a column type; use one of {known}")
    return normalized


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} must start with a letter or '_' and hold only letters, digits and '_'"
        )
    return name


class ValueMismatch(ValueError):
    """A JSON value that the declared column type cannot hold."""


def coerce(value: Any, kind: str) -> Any:
    """The stored form of one JSON value for a column of `kind`; None stays None."""
    if value is None:
        return None
    converter = _CONVERTERS[kind]
    return converter(value)


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 timestamp as naive UTC (the storage form); offsets are honoured, none means UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueMismatch(f"{text!r} is not an ISO 8601 datetime") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _describe(value: Any) -> str:
    return f"{json.dumps(value)[:60]} ({type(value).__name__})"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueMismatch(f"expected a string, got {_describe(value)}")
    return value


def _integer(bounds: tuple[int, int], kind: str) -> Any:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueMismatch(f"expected an integer ({kind}), got {_describe(value)}")
        if not bounds[0] <= value <= bounds[1]:
            raise ValueMismatch(f"{value} is out of range for {kind}")
        return value

    return convert


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueMismatch(f"expected a number (real), got {_describe(value)}")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueMismatch(f"expected true or false, got {_describe(value)}")
    return value


def _datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueMismatch(f"expected an ISO 8601 datetime string, got {_describe(value)}")
    return parse_datetime(value)


def _dynamic(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _guid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueMismatch(f"expected a GUID string, got {_describe(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueMismatch(f"{value!r} is not a GUID") from exc


_CONVERTERS = {
    "string": _string,
    "int": _integer(_INT32, "int"),
    "long": _integer(_INT64, "long"),
    "real": _real,
    "bool": _bool,
    "datetime": _datetime,
    "dynamic": _dynamic,
    "guid": _guid,
}
