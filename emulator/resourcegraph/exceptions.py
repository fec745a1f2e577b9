"""Errors of Resource Graph, shaped as the real service answers.

Real ARG puts a support line in `error.message` and the reason in `error.details[]`:
`{"error": {"code": "BadRequest", "message": "Please provide below info when asking for support:
timestamp = …, correlationId = ….", "details": [{"code": "InvalidQuery", "message": "Query is
invalid. …"}, {"code": "ParserFailure", "message": "ParserFailure", "line": 1,
"characterPositionInLine": 11, "token": "<EOF>"}]}}` (recorded in Az.ResourceGraph's tests and in
public issue threads); throttling answers `RateLimiting` the same way. The second detail of a
semantic error (unknown column or table) uses Kusto's wording under the code `SemanticError`,
which was not found in a recorded answer.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from emulator.core.errors import ServiceError

INVALID_QUERY = (
    "Query is invalid. Please refer to the documentation for the Azure Resource Graph service "
    "and fix the error before retrying."
)
THROTTLED = (
    "Client application has been throttled and should not attempt to repeat the request until an "
    "amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."
)
_OFFENDING_TOKEN = re.compile(r"input '(.*?)'")


def support_line(now: datetime) -> str:
    moment = now.astimezone(UTC)
    stamp = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"
    return (
        "Please provide below info when asking for support: "
        f"timestamp = {stamp}, correlationId = {uuid.uuid4()}."
    )


class InvalidQuery(ServiceError):
    """400 for a query that does not parse or does not bind."""

    status = 400
    code = "BadRequest"

    def __init__(self, now: datetime, reasons: list[dict[str, Any]]) -> None:
        super().__init__(
            support_line(now), details=[{"code": "InvalidQuery", "message": INVALID_QUERY}, *reasons]
        )


def parser_failure(line: int, column: int, message: str) -> dict[str, Any]:
    """The detail ARG gives for a syntax error, at a 1-based line and 0-based column."""
    found = _OFFENDING_TOKEN.search(message)
    token = found.group(1) if found else "<EOF>"
    return {
        "code": "ParserFailure",
        "message": "ParserFailure",
        "line": line,
        "characterPositionInLine": column,
        "token": token,
    }


def unknown_name(name: str) -> dict[str, Any]:
    return {
        "code": "SemanticError",
        "message": f"The name '{name}' does not refer to any known column, table, variable or function.",
    }


def semantic_error(message: str) -> dict[str, Any]:
    return {"code": "SemanticError", "message": message}


def unsupported_by_emulator(construct: str) -> dict[str, Any]:
    """Real ARG may accept this query; the emulator's KQL engine cannot run it."""
    return {
        "code": "UnsupportedByEmulator",
        "message": f"The emulator cannot run this query: {construct}.",
    }


class InvalidQueryRequest(ServiceError):
    """400 for a malformed request body or options (the query itself is not looked at)."""

    status = 400
    code = "BadRequest"


class RateLimited(ServiceError):
    """429 once a user spent the queries of the current 5-second window."""

    status = 429
    code = "RateLimiting"

    def __init__(self, now: datetime, headers: dict[str, str]) -> None:
        super().__init__(
            support_line(now), headers=headers, details=[{"code": "RateLimiting", "message": THROTTLED}]
        )


class ManagementGroupNotReadable(ServiceError):
    """A management group the emulator does not know, answered as ARM answers a scope it cannot read."""

    status = 403
    code = "AuthorizationFailed"

    def __init__(self, group: str) -> None:
        super().__init__(
            f"The client does not have authorization to read management group '{group}' "
            "or the management group does not exist."
        )
