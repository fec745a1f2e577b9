"""A Logs Ingestion upload body: size limit, gzip, JSON array, rows checked against the stream.

The 1 MB limit is measured on the body as sent (compressed when gzip): that is the call size the
service limits and what Azure.Monitor.Ingestion's live test provokes (an uncompressed body of
1 MB + 5 bytes -> 413 ContentLengthLimitExceeded). The SDK chunks the *uncompressed* JSON to
1 MB before gzip, so its chunks always pass.

Strict mode (the default) answers 400 where the real service answers 204 and silently drops data:
a body that is not a JSON array, an undeclared column, a value the declared type cannot hold.
Those silent drops are the bugs a test wants to see; `strict_ingestion: false` reproduces the
service instead (undeclared columns dropped, mismatched values null, a non-array body ignored).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.monitor.columns import Column, ValueMismatch, coerce
from emulator.monitor.entities import TIME_GENERATED
from emulator.monitor.exceptions import (
    MAX_UPLOAD_BYTES,
    ContentLengthLimitExceeded,
    InvalidContentEncoding,
    InvalidPayload,
)

MAX_DECODED_BYTES = 64 * MAX_UPLOAD_BYTES  # a guard against gzip bombs, far above any real chunk


@dataclass(frozen=True)
class StreamShape:
    """What an upload to one stream may carry."""

    name: str
    rule_id: str
    columns: Mapping[str, Column]


def decode_upload(raw: bytes, content_encoding: str | None) -> Any:
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ContentLengthLimitExceeded(len(raw))
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw)
    elif encoding not in ("", "identity"):
        raise InvalidContentEncoding(
            f"Content-Encoding '{content_encoding}' is not supported; use gzip or none."
        )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload(f"The request body is not valid JSON: {exc}.") from exc


def rows_for_stream(body: Any, stream: StreamShape, strict: bool) -> list[dict[str, Any]]:
    """Each JSON object as column -> stored value (only the columns it carries)."""
    if not isinstance(body, list):
        if strict:
            raise InvalidPayload(
                f"The request body must be a JSON array of objects, got a JSON {type(body).__name__}. "
                "(The real service answers 204 and drops such a body.)"
            )
        return []
    rows = []
    for index, item in enumerate(body):
        if not isinstance(item, dict):
            if strict:
                raise InvalidPayload(
                    f"Item {index} of the body is a JSON {type(item).__name__}, not an object."
                )
            continue
        rows.append(_row(index, item, stream, strict))
    return rows


def _row(index: int, item: dict[str, Any], stream: StreamShape, strict: bool) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in item.items():
        column = stream.columns.get(key) or (TIME_GENERATED if key == TIME_GENERATED.name else None)
        if column is None:
            if strict:
                raise InvalidPayload(
                    f"Item {index}: column '{key}' is not declared in stream '{stream.name}' of data "
                    f"collection rule '{stream.rule_id}'. Declared columns: {', '.join(stream.columns)}."
                )
            continue
        try:
            row[column.name] = coerce(value, column.type)
        except ValueMismatch as exc:
            if strict:
                raise InvalidPayload(
                    f"Item {index}: column '{key}' is declared as '{column.type}': {exc}."
                ) from exc
            row[column.name] = None
    return row


def _gunzip(raw: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, MAX_DECODED_BYTES)
    except zlib.error as exc:
        raise InvalidContentEncoding(f"The body is not valid gzip: {exc}.") from exc
    if inflater.unconsumed_tail:
        raise ContentLengthLimitExceeded(len(raw))
    if not inflater.eof:
        raise InvalidContentEncoding("The gzip body is truncated.")
    return data
