"""duckdb-kql and DuckDB failures rendered as the query API's errors (SyntaxError, SemanticError)."""

from __future__ import annotations

import re

import duckdb
from duckdb_kql import KqlSchemaError, KqlSyntaxError, KqlUnsupportedError

from emulator.monitor.exceptions import BadArgument, kql_semantic_error, kql_syntax_error

_TOKEN = re.compile(r"[A-Za-z0-9_]+|\S")
_UNRESOLVED = (
    re.compile(r'Table with name "?([^"\s!]+)"? does not exist'),
    re.compile(r'Referenced column "([^"]+)" not found'),
    re.compile(r'column "?([^"\s]+)"? (?:does not exist|not found)', re.IGNORECASE),
)


def query_error(exc: Exception, query: str) -> BadArgument:
    """The service-shaped error for a query the engine refused; unknown failures re-raise."""
    if isinstance(exc, KqlSyntaxError):
        return _syntax(exc, query)
    if isinstance(exc, KqlUnsupportedError):
        # Not a service error: the emulator's KQL engine lacks the construct. Say so plainly.
        return kql_semantic_error(
            "EmulatorUnsupported", f"The emulator's KQL engine (duckdb-kql) cannot run this: {exc}"
        )
    if isinstance(exc, KqlSchemaError):
        return _unresolved(exc.name)
    if isinstance(exc, duckdb.Error):
        for pattern in _UNRESOLVED:
            found = pattern.search(str(exc))
            if found:
                return _unresolved(found.group(1))
        return kql_semantic_error("SEM0001", str(exc).splitlines()[0])
    raise exc


def _syntax(exc: KqlSyntaxError, query: str) -> BadArgument:
    if not exc.diagnostics:
        return kql_syntax_error(f"Query could not be parsed: {exc}", 1, 0, "")
    span = exc.diagnostics[0].span
    lines = query.splitlines() or [""]
    text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    found = _TOKEN.match(text, span.column) if span.column < len(text) else None
    token = found.group(0) if found else ""
    message = f"Query could not be parsed at '{token}' on line [{span.line},{span.column}]"
    return kql_syntax_error(message, span.line, span.column, token)


def _unresolved(name: str) -> BadArgument:
    return kql_semantic_error("SEM0100", f"Failed to resolve table or column expression named '{name}'")
