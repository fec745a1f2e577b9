"""Errors of the Logs Ingestion API and the Log Analytics query API, in each service's own shape.

Ingestion answers the data-plane `ErrorResponse` (`{"error": {"code", "message"}}`) with an
`x-ms-error-code` header (spec: monitor/data-plane/ingestion 2023-01-01). The query API answers
`{"error": {"message", "code", "correlationId", "innererror": {...}}}` as recorded from
api.loganalytics.io (e.g. a syntax error: BadArgumentError > SyntaxError > SYN0002).
"""

from __future__ import annotations

import uuid
from typing import Any

from emulator.core.errors import ServiceError

MAX_UPLOAD_BYTES = 1024 * 1024


class IngestionError(ServiceError):
    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code, status=status, headers={"x-ms-error-code": code})


class DataCollectionRuleNotFound(IngestionError):
    def __init__(self, rule_id: str) -> None:
        # The service's own wording (seen in azure-sdk-for-js live tests and field reports).
        super().__init__(
            f"Data collection rule with immutable Id '{rule_id}' not found.", code="NotFound", status=404
        )


class StreamNotFound(IngestionError):
    def __init__(self, stream: str, rule_id: str, declared: list[str]) -> None:
        super().__init__(
            f"Stream '{stream}' is not declared in data collection rule with immutable Id '{rule_id}'. "
            f"Declared streams: {', '.join(declared) or 'none'}.",
            code="InvalidStream",
            status=404,
        )


class ContentLengthLimitExceeded(IngestionError):
    def __init__(self, length: int) -> None:
        # Wording and code from Azure.Monitor.Ingestion's live test against the real service.
        super().__init__(
            f"Maximum allowed content length: {MAX_UPLOAD_BYTES} bytes (1 MB). "
            f"Provided content length: {length} bytes.",
            code="ContentLengthLimitExceeded",
            status=413,
        )


class InvalidPayload(IngestionError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="InvalidPayload", status=400)


class InvalidContentEncoding(IngestionError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="InvalidContentEncoding", status=400)


class LogAnalyticsError(ServiceError):
    """An error of api.loganalytics.io: a generic outer error with the precise cause nested inside."""

    def __init__(
        self, message: str, *, code: str, status: int, innererror: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.innererror = innererror

    @property
    def detail(self) -> str:
        """The innermost message: the precise cause."""
        inner: dict[str, Any] | None = self.innererror
        message = self.message
        while inner is not None:
            message = str(inner.get("message", message))
            inner = inner.get("innererror")
        return message

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "correlationId": str(uuid.uuid4()),
        }
        if self.innererror is not None:
            error["innererror"] = self.innererror
        return {"error": error}


class WorkspaceNotFound(LogAnalyticsError):
    def __init__(self) -> None:
        # What the service answers for a workspace id it does not know (azure-sdk-for-python#32798).
        super().__init__("The requested path does not exist", code="PathNotFoundError", status=404)


class BadArgument(LogAnalyticsError):
    """400 "The request had some invalid properties", the cause in `innererror`."""

    def __init__(self, innererror: dict[str, Any]) -> None:
        super().__init__(
            "The request had some invalid properties",
            code="BadArgumentError",
            status=400,
            innererror=innererror,
        )


def kql_syntax_error(detail: str, line: int, pos: int, token: str) -> BadArgument:
    return BadArgument(
        {
            "code": "SyntaxError",
            "message": "A recognition error occurred in the query.",
            "innererror": {"code": "SYN0002", "message": detail, "line": line, "pos": pos, "token": token},
        }
    )


def kql_semantic_error(code: str, detail: str) -> BadArgument:
    return BadArgument(
        {
            "code": "SemanticError",
            "message": "A semantic error occurred.",
            "innererror": {"code": code, "message": detail},
        }
    )


def invalid_request(code: str, detail: str) -> BadArgument:
    return BadArgument({"code": code, "message": detail})
