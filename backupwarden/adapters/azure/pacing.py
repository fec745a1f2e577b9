"""Client-side pacing: ARM's token buckets and Resource Graph's query quota, mirrored in the process.

ARM throttles per subscription, principal and kind (azure-facts §4): a read bucket of 250 tokens
refilled at 25/s, a write bucket of 200 refilled at 10/s. A client that only reacts to 429s storms
the bucket and waits out Retry-After over and over; one that keeps the same buckets locally sends
each request when a token is there, so 429s stay rare. The local buckets follow the server:
- `x-ms-ratelimit-remaining-subscription-reads/-writes` resyncs a bucket DOWN to what the server
  says (minus the requests this process sent since; other processes share the server's bucket);
- a 429's `Retry-After` pauses the bucket: nothing of that kind goes out until it has passed.
Resource Graph has no buckets but a per-user quota window: `x-ms-user-quota-remaining` queries
until `x-ms-user-quota-resets-after` (hh:mm:ss); at 0 the next query waits for the reset.
Every wait a header asks for is capped at the pacer's `max_pause_s` (BACKUPWARDEN_RETRY_AFTER_MAX):
`Retry-After: 86400`, an HTTP date a year out or a bad clock must not hold a run past its budget.

Header names are read from azure-core's response headers, which compare them case-insensitively
(RFC 9110 §5.1): real Azure over HTTP/2 and proxies send them lower-case.

Kind: GET/HEAD/OPTIONS are reads, every other method a write (ARM counts POST actions as writes).
Requests without `/subscriptions/{id}/` in their path (tenant-level, Logs, Storage) pass unpaced.

One `Pacer` is shared by every client and thread of a process (the composition root keeps it):
the buckets are per subscription, not per client, and all of them are thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from backupwarden.domain.arm_ids import arm_key

logger = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REMAINING_HEADER = {
    "read": "x-ms-ratelimit-remaining-subscription-reads",
    "write": "x-ms-ratelimit-remaining-subscription-writes",
}
QUOTA_REMAINING_HEADER = "x-ms-user-quota-remaining"
QUOTA_RESETS_HEADER = "x-ms-user-quota-resets-after"
_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:/|$)")
_RESOURCE_GRAPH = re.compile(r"/providers/Microsoft\.ResourceGraph/resources$", re.IGNORECASE)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class BucketRate:
    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.refill_per_s <= 0:
            raise ValueError(f"a token bucket needs capacity >= 1 and refill > 0, not {self}")


# Tokens kept below the server's count when resyncing down: what other processes send during one
# round trip (5 % of ARM's buckets: 12 reads, 10 writes).
RESYNC_MARGIN = 0.05
ARM_READS = BucketRate(250, 25)
ARM_WRITES = BucketRate(200, 10)
DEFAULT_MAX_PAUSE_S = 60.0  # the default of BACKUPWARDEN_RETRY_AFTER_MAX


class TokenBucket:
    """A token bucket whose tokens may go below zero: each taker reserves its token and sleeps its share.

    Reserving (rather than polling) keeps waiters in arrival order and never busy-waits.
    `issued` counts every reservation; a response's `ticket` says how many were issued before it.
    """

    def __init__(self, rate: BucketRate, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(rate.capacity)
        self._updated = clock()
        self._paused_until = 0.0
        self._issued = 0

    def acquire(self) -> int:
        """Wait for a token; returns the ticket (the number of tokens issued so far, this one included).

        A taker that slept checks again: a resync or a 429 elsewhere may have pushed its turn back.
        """
        with self._lock:
            self._refill()
            self._tokens -= 1
            self._issued += 1
            ticket = self._issued
        while (wait := self._wait_s(ticket)) > 0:
            self._sleep(wait)
        return ticket

    def _wait_s(self, ticket: int) -> float:
        with self._lock:
            now = self._refill()
            # the tokens left for this ticket: the later tickets' reservations come after it
            covered = self._tokens + (self._issued - ticket)
            return max(self._paused_until - now, -covered / self.rate.refill_per_s)

    def resync(self, remaining: int, ticket: int) -> None:
        """The server had `remaining` tokens when it answered the request holding `ticket`.

        Only ever down: a server with fewer tokens than this bucket means other processes (other
        function instances) spend the same bucket. What they send while this answer travels is
        unknown here, hence the margin below the server's count.
        """
        with self._lock:
            self._refill()
            sent_since = self._issued - ticket  # already taken here, not yet counted in `remaining`
            margin = RESYNC_MARGIN * self.rate.capacity
            if remaining - sent_since < self._tokens:
                self._tokens = float(remaining - sent_since) - margin

    def pause(self, seconds: float) -> None:
        """The server refused (429) and asks for `seconds` of quiet: no token until they have passed."""
        with self._lock:
            now = self._refill()
            self._paused_until = max(self._paused_until, now + seconds)
            self._tokens = min(self._tokens, 0.0)

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens

    def _refill(self) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.rate.capacity), self._tokens + elapsed * self.rate.refill_per_s)
        self._updated = now
        return now


class QuotaWindow:
    """Resource Graph's per-user quota as the headers tell it: `remaining` queries until `resets_at`."""

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._remaining: int | None = None  # unknown until the first answer
        self._resets_at = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                if self._remaining is not None and now >= self._resets_at:
                    self._remaining = None  # a new window: the next answer tells its quota
                if self._remaining is None or self._remaining > 0:
                    if self._remaining is not None:
                        self._remaining -= 1
                    return
                wait = self._resets_at - now
            self._sleep(wait)

    def update(self, remaining: int, resets_after_s: float) -> None:
        with self._lock:
            self._remaining = remaining
            self._resets_at = self._clock() + resets_after_s

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._remaining = 0
            self._resets_at = max(self._resets_at, self._clock() + seconds)


class Pacer:
    """Every bucket of one process: (subscription, kind) -> TokenBucket, and the Resource Graph window."""

    def __init__(
        self,
        reads: BucketRate = ARM_READS,
        writes: BucketRate = ARM_WRITES,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        max_pause_s: float = DEFAULT_MAX_PAUSE_S,
    ) -> None:
        self.rates = {"read": reads, "write": writes}
        self.max_pause_s = max_pause_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self.resource_graph = QuotaWindow(clock, sleep)

    def bucket(self, subscription: str, kind: str) -> TokenBucket:
        key = (arm_key(subscription), kind)
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(self.rates[kind], self._clock, self._sleep)
            return found

    def pause_s(self, asked_s: float) -> float:
        """The pause a header asks for, at most `max_pause_s`; none for a negative or nan one."""
        if not asked_s > 0:
            return 0.0
        return min(asked_s, self.max_pause_s)


def request_kind(method: str) -> str:
    return "read" if method.upper() in READ_METHODS else "write"


class PacingPolicy(HTTPPolicy[Any, Any]):
    """Waits for the pacer before each try and feeds it what the answer says (a per-retry policy)."""

    def __init__(self, pacer: Pacer) -> None:
        super().__init__()
        self._pacer = pacer

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        path = http.url.split("?", 1)[0]
        if _RESOURCE_GRAPH.search(path):
            return self._send_query(request)
        found = _SUBSCRIPTION.search(path)
        if found is None:
            return self.next.send(request)
        kind = request_kind(http.method)
        bucket = self._pacer.bucket(found.group(1), kind)
        ticket = bucket.acquire()
        response = self.next.send(request)
        headers = response.http_response.headers
        remaining = _integer(headers.get(REMAINING_HEADER[kind]))
        if remaining is not None:
            bucket.resync(remaining, ticket)
        if response.http_response.status_code == 429:
            pause = self._pacer.pause_s(retry_after_s(headers))
            bucket.pause(pause)
            logger.info("arm throttled; pausing", extra={"kind": kind, "pause_s": pause})
        return response

    def _send_query(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        window = self._pacer.resource_graph
        window.acquire()
        response = self.next.send(request)
        headers = response.http_response.headers
        remaining = _integer(headers.get(QUOTA_REMAINING_HEADER))
        resets_after = parse_timespan_s(headers.get(QUOTA_RESETS_HEADER))
        if remaining is not None and resets_after is not None:
            window.update(remaining, self._pacer.pause_s(resets_after))
        if response.http_response.status_code == 429:
            window.pause(self._pacer.pause_s(retry_after_s(headers)))
        return response


def retry_after_s(headers: Any) -> float:
    """Seconds from `Retry-After` (seconds or an HTTP date); 1 s when the header is missing or bad."""
    raw = headers.get("Retry-After") if headers is not None else None
    if raw is None:
        return 1.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(str(raw)).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0


def parse_timespan_s(raw: str | None) -> float | None:
    """`hh:mm:ss` (a .NET TimeSpan, as Resource Graph writes it) in seconds; None when absent or bad."""
    if not raw:
        return None
    try:
        hours, minutes, seconds = (float(part) for part in raw.strip().split(":"))
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _integer(raw: str | None) -> int | None:
    try:
        return int(str(raw).strip()) if raw is not None else None
    except ValueError:
        return None
