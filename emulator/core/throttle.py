"""ARM's token buckets, per subscription and kind (read or write), on the emulated clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass
class BucketSpec:
    capacity: float
    refill_per_s: float


@dataclass
class TokenBucket:
    spec: BucketSpec
    tokens: float
    updated: datetime

    def take(self, now: datetime) -> tuple[bool, float]:
        """Take one token; returns (granted, seconds until one is available)."""
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(self.spec.capacity, self.tokens + elapsed * self.spec.refill_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0
        if self.spec.refill_per_s <= 0:
            return False, math.inf
        return False, (1.0 - self.tokens) / self.spec.refill_per_s


DEFAULT_BUCKETS = {
    "read": BucketSpec(capacity=250, refill_per_s=25),
    "write": BucketSpec(capacity=200, refill_per_s=10),
}


class Throttle:
    def __init__(self, specs: dict[str, BucketSpec] | None = None, enabled: bool = True) -> None:
        self.specs = dict(specs or DEFAULT_BUCKETS)
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def take(self, subscription: str, kind: str, now: datetime) -> tuple[bool, float, int]:
        """(granted, wait seconds, remaining tokens) for one request."""
        spec = self.specs.get(kind)
        if spec is None:
            return True, 0.0, -1
        key = (subscription.lower(), kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(spec, spec.capacity, now)
        if not self.enabled:
            return True, 0.0, int(bucket.tokens)
        granted, wait = bucket.take(now)
        return granted, wait, int(bucket.tokens)

    def reset(self) -> None:
        self._buckets.clear()
