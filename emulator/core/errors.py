"""Service-shaped errors: every failure the emulator answers with is one of these."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error rendered as ARM's `{"error": {"code", "message"}}` body."""

    status = 400
    code = "BadRequest"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ServiceError):
    status = 400
    code = "BadRequest"


class InvalidJson(ServiceError):
    status = 400
    code = "InvalidRequestContent"


class MissingApiVersion(ServiceError):
    status = 400
    code = "MissingApiVersionParameter"

    def __init__(self) -> None:
        super().__init__("The api-version query parameter (?api-version=) is required for all requests.")


class InvalidApiVersion(ServiceError):
    status = 400
    code = "InvalidApiVersionParameter"

    def __init__(self, given: str, supported: list[str]) -> None:
        super().__init__(
            f"The api-version '{given}' is invalid. "
            f"The supported versions are '{','.join(sorted(supported))}'."
        )


class Unauthorized(ServiceError):
    status = 401
    code = "AuthenticationFailed"

    def __init__(self) -> None:
        super().__init__(
            "Authentication failed. The 'Authorization' header is missing.",
            headers={
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                'error="invalid_token", error_description="The authentication failed because of missing '
                "'Authorization' header.\""
            },
        )


class NotFound(ServiceError):
    status = 404
    code = "ResourceNotFound"


class RouteNotFound(ServiceError):
    status = 404
    code = "InvalidResourceType"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"No route serves '{method} {path}' in the emulator.")


class MethodNotAllowed(ServiceError):
    status = 405
    code = "MethodNotAllowed"

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(
            f"The method '{method}' is not allowed on '{path}'.",
            headers={"Allow": ", ".join(sorted(allowed))},
        )


class Conflict(ServiceError):
    status = 409
    code = "Conflict"


class TooManyRequests(ServiceError):
    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InjectedFault(ServiceError):
    """A 5xx or 429 set by a test or scenario through the fault API."""

    def __init__(self, status: int, retry_after_s: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        code = "TooManyRequests" if status == 429 else "InternalServerError"
        super().__init__(f"Injected fault: HTTP {status}.", code=code, status=status, headers=headers)
