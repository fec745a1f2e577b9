"""Signed operation URLs: the `t`, `c`, `s`, `h` query parameters ARM appends to the URLs it hands out.

ARM writes `?api-version=…&t=<.NET ticks>&c=<signing certificate>&s=<signature>&h=<hash>` into the
`Location` and `Azure-AsyncOperation` URLs of its 202 answers (seen in the azure-cli recording
`test_backup_scenario.yaml`, from late 2023, and on Recovery Services operation URLs since 2026).
Microsoft does not publish the scheme, so this one is the emulator's own: an HMAC over the
lower-case path and `t`, in base64url like the recorded values. A poll that carries the
parameters must carry them unchanged; a poll without them (a client that rebuilt the URL from the
operation id) is served as before. Hand-written because no library models ARM's signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode

from emulator.core.errors import ServiceError

SIGNED_PARAMETERS = ("t", "c", "s", "h")
# .NET ticks (100 ns) at the Unix epoch: what the recorded `t` values count from year 1.
_EPOCH_TICKS = 621_355_968_000_000_000
# Stands in for the recorded `c` (a DER certificate, base64url): the bytes mean nothing.
_CERTIFICATE = base64.urlsafe_b64encode(b"emulator-async-operation-signing-cert" * 4).decode().rstrip("=")


class InvalidOperationSignature(ServiceError):
    """The emulator's own code: Microsoft does not document how ARM refuses a tampered URL."""

    status = 400
    code = "InvalidOperationUrlSignature"

    def __init__(self) -> None:
        super().__init__(
            "The operation URL's signature parameters (t, c, s, h) do not match the URL they were "
            "issued for. Poll the Location or Azure-AsyncOperation URL exactly as received."
        )


class OperationUrlSigner:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def sign(self, path: str, api_version: str, now: datetime) -> str:
        """The query string of an operation URL for `path`, signed at `now`."""
        ticks = str(_EPOCH_TICKS + int(now.astimezone(UTC).timestamp() * 10_000_000))
        query = {
            "api-version": api_version,
            "t": ticks,
            "c": _CERTIFICATE,
            "s": self._signature(path, ticks),
            "h": _b64(hashlib.sha256(f"{path.lower()}|{ticks}|{_CERTIFICATE}".encode()).digest()),
        }
        return urlencode(query)

    def check(self, path: str, query: dict[str, str]) -> None:
        """Raise unless the poll carries no signature at all or exactly the one issued for `path`."""
        given = [name for name in SIGNED_PARAMETERS if name in query]
        if not given:
            return
        if len(given) != len(SIGNED_PARAMETERS) or query["c"] != _CERTIFICATE:
            raise InvalidOperationSignature()
        expected_hash = _b64(hashlib.sha256(f"{path.lower()}|{query['t']}|{_CERTIFICATE}".encode()).digest())
        valid = hmac.compare_digest(query["s"], self._signature(path, query["t"])) and hmac.compare_digest(
            query["h"], expected_hash
        )
        if not valid:
            raise InvalidOperationSignature()

    def _signature(self, path: str, ticks: str) -> str:
        return _b64(hmac.new(self._key, f"{path.lower()}|{ticks}".encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
