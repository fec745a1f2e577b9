"""Uploads to the Logs Ingestion API: one call per batch, and a failure says whether a retry can help."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.ingestion import LogsIngestionClient

# What azure-monitor-ingestion puts in one request: rows whose JSON adds up to at most 1 MiB.
MAX_UPLOAD_BYTES = 1024 * 1024


class RejectedBatch(Exception):
    """The service refused the batch's content (400, 413): splitting the batch can isolate the cause."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class IngestionUnavailable(Exception):
    """Throttled, failing or unreachable after the client's own retries: try again on a later run."""


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the wire carries it: datetimes as ISO-8601 UTC."""
    return {
        k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v) for k, v in row.items()
    }


def row_size(row: dict[str, Any]) -> int:
    """The bytes the SDK counts for this row when it splits uploads into 1 MiB chunks."""
    return len(json.dumps(row).encode("utf-8"))


class LogsUploader:
    def __init__(self, client: LogsIngestionClient, rule_id: str) -> None:
        self._client = client
        self._rule_id = rule_id

    def upload(self, stream: str, rows: list[dict[str, Any]]) -> None:
        """Rows already in wire form (`row_json`) and under MAX_UPLOAD_BYTES: one request."""
        try:
            logs: list[MutableMapping[str, Any]] = list(rows)
            self._client.upload(rule_id=self._rule_id, stream_name=stream, logs=logs)
        except HttpResponseError as exc:
            if exc.status_code in (400, 413):
                raise RejectedBatch(exc.status_code, str(exc.message)) from exc
            raise IngestionUnavailable(f"HTTP {exc.status_code}: {exc.message}") from exc
        except AzureError as exc:
            raise IngestionUnavailable(str(exc)) from exc
