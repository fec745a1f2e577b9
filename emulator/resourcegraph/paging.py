"""Which rows a request asks for: `$top`, `$skip` and the opaque `$skipToken` of QueryRequestOptions.

Resource Graph returns 100 rows unless `$top` says otherwise (at most 1,000). A result can be
paged when it has an `id` column (ARG pages in a stable order by id); such a result that goes on
gets a `$skipToken`, any other result is cut at the page with `resultTruncated: "true"`. The
token is base64 JSON of the next offset, the page size and a hash of query and scope, and it is
refused with another query or scope; a next page runs the query again on the current data, as
ARG does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from emulator.resourcegraph.exceptions import InvalidQueryRequest

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PageRequest:
    offset: int
    size: int


def query_key(query: str, scope: list[str] | None) -> str:
    scope_text = "*" if scope is None else ",".join(sorted(s.lower() for s in scope))
    return hashlib.sha256(f"{query}\n{scope_text}".encode()).hexdigest()[:16]


def page_request(options: dict[str, Any], key: str) -> PageRequest:
    top = _integer(options, "$top", 1, MAX_PAGE_SIZE)
    skip = _integer(options, "$skip", 0, None)
    token = options.get("$skipToken")
    offset, size = (0, DEFAULT_PAGE_SIZE) if token is None else _read_token(token, key)
    return PageRequest(offset=skip if skip is not None else offset, size=top if top is not None else size)


def skip_token(offset: int, size: int, key: str) -> str:
    payload = json.dumps({"offset": offset, "size": size, "query": key}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def _read_token(token: Any, key: str) -> tuple[int, int]:
    try:
        payload = json.loads(base64.b64decode(str(token), validate=True))
        offset, size, token_key = int(payload["offset"]), int(payload["size"]), payload["query"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidQueryRequest("The $skipToken is not valid.") from exc
    if token_key != key:
        raise InvalidQueryRequest("The $skipToken was issued for another query or scope.")
    return offset, size


def _integer(options: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidQueryRequest(f"The query option '{name}' must be an integer {limit}; got {value!r}.")
    return value
