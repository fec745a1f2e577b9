"""Log Analytics queries through azure-monitor-query: plain rows out, failures as AzureCallError.

The time window always travels as the query API's `timespan`, which the service applies to every
table the query reads; it is never formatted into the KQL text.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryResult

from backupwarden.adapters.azure.errors import AzureCallError

Timespan = timedelta | tuple[datetime, datetime]


class LogsQuery:
    """One workspace's query API."""

    def __init__(self, client: LogsQueryClient, workspace_id: str) -> None:
        self._client = client
        self._workspace_id = workspace_id

    def rows(self, query: str, timespan: Timespan, step: str = "log analytics query") -> list[dict[str, Any]]:
        """The rows of the query's first table as {column: value}: datetimes parsed, dynamic as JSON text.

        A partial result (the service stopped part-way, e.g. at a result limit) is an error: a report
        built on some of the rows would look complete and be wrong.
        """
        try:
            result = self._client.query_workspace(self._workspace_id, query, timespan=timespan)
        except HttpResponseError as exc:
            raise _query_error(step, exc) from exc
        except AzureError as exc:
            raise AzureCallError.from_sdk(step, exc) from exc
        if isinstance(result, LogsQueryPartialResult):
            error = result.partial_error
            raise AzureCallError(
                step,
                str(getattr(error, "code", "") or "PartialError"),
                str(getattr(error, "message", "") or "the query returned partial results"),
            )
        return _first_table_rows(result)


def _first_table_rows(result: LogsQueryResult) -> list[dict[str, Any]]:
    if not result.tables:
        return []
    table = result.tables[0]
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _query_error(step: str, exc: HttpResponseError) -> AzureCallError:
    """The query API nests the precise cause (e.g. SemanticError > SEM0100) under BadArgumentError;
    the SDK puts its innermost message into `exc.model`, which the generic conversion would miss."""
    error = AzureCallError.from_sdk(step, exc)
    model = getattr(exc, "model", None)
    detail = getattr(model, "message", None)
    code = getattr(model, "code", None)
    if detail:
        return AzureCallError(step, str(code or error.code), str(detail), exc.status_code)
    return error
