"""ARM list paging: `value` + `nextLink` carrying an opaque `$skiptoken`.

The first page captures the sorted keys of the whole listing (a snapshot, as ARM's
continuation tokens behave), so paging a 100k-VM estate costs one sort, not one per
page. A token whose snapshot was evicted falls back to "keys after the last one seen".
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from emulator.core.errors import BadRequest

SKIP_TOKEN = "$skiptoken"
_SNAPSHOTS_KEPT = 32


class InvalidSkipToken(BadRequest):
    code = "InvalidSkipToken"

    def __init__(self) -> None:
        super().__init__(f"The '{SKIP_TOKEN}' query parameter is not a token this service issued.")


@dataclass(frozen=True)
class Page:
    keys: list[str]
    next_token: str | None


class SnapshotPager:
    def __init__(self) -> None:
        self._snapshots: OrderedDict[str, list[str]] = OrderedDict()

    def page(self, all_keys: Callable[[], list[str]], token: str | None, size: int) -> Page:
        """One page of `size` keys; `all_keys` is only called for a first page or an evicted snapshot."""
        if size < 1:
            raise ValueError("page size must be >= 1")
        if token:
            snapshot_id, offset, last_key = _decode(token)
            keys = self._snapshots.get(snapshot_id)
            if keys is None:
                keys = sorted(all_keys())
                offset = bisect.bisect_right(keys, last_key)
                snapshot_id = self._keep(keys)
        else:
            keys, offset = sorted(all_keys()), 0
            snapshot_id = self._keep(keys)
        chunk = keys[offset : offset + size]
        end = offset + len(chunk)
        next_token = _encode(snapshot_id, end, chunk[-1]) if chunk and end < len(keys) else None
        return Page(chunk, next_token)

    def _keep(self, keys: list[str]) -> str:
        snapshot_id = uuid.uuid4().hex
        self._snapshots[snapshot_id] = keys
        while len(self._snapshots) > _SNAPSHOTS_KEPT:
            self._snapshots.popitem(last=False)
        return snapshot_id


def next_link(base_url: str, path: str, query: dict[str, str], token: str | None) -> str | None:
    """The `nextLink` for `token`: the same request with `$skiptoken` replaced."""
    if token is None:
        return None
    params = {k: v for k, v in query.items() if k.lower() != SKIP_TOKEN}
    params[SKIP_TOKEN] = token
    return f"{base_url}{path}?{urlencode(params)}"


def skip_token(query: dict[str, str]) -> str | None:
    for key, value in query.items():
        if key.lower() == SKIP_TOKEN:
            return value
    return None


def _encode(snapshot_id: str, offset: int, last_key: str) -> str:
    raw = json.dumps({"s": snapshot_id, "o": offset, "k": last_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> tuple[str, int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(raw["s"]), int(raw["o"]), str(raw["k"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidSkipToken() from exc
