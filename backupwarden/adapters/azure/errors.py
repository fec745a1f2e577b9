"""Azure SDK failures as one exception type carrying the service's error code."""

from __future__ import annotations

from azure.core.exceptions import AzureError, HttpResponseError


class AzureCallError(Exception):
    """A call to Azure failed; `code` is the service's error code, e.g. UserErrorBackupOperationInProgress."""

    def __init__(self, step: str, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{step}: {code}: {message}")
        self.step = step
        self.code = code
        self.message = message
        self.status = status

    @classmethod
    def from_sdk(cls, step: str, error: AzureError) -> AzureCallError:
        if isinstance(error, HttpResponseError):
            code = (
                error.error.code
                if error.error is not None and error.error.code
                else f"Http{error.status_code}"
            )
            message = (
                error.error.message if error.error is not None and error.error.message else str(error.message)
            )
            return cls(step, str(code), str(message), error.status_code)
        return cls(step, type(error).__name__, str(error))

    @property
    def not_found(self) -> bool:
        return self.status == 404
