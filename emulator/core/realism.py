"""Latency, injected faults (errors, resets, storms, lost answers) and the request log."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Fault:
    """Answer requests whose path matches `path_regex` (and `method`, if set) with `status`.

    `status` is an HTTP status (429 or 5xx) or 0 for a connection reset. `rate` is the
    probability per matching request; `remaining` bounds how many times it fires. Once fired it
    answers the next `burst - 1` matching requests the same way too (a storm). With `lose_answer`
    the request is served (the write happens) and then the connection drops: the answer is lost.
    """

    path_regex: str
    status: int = 0
    method: str | None = None
    rate: float = 1.0
    remaining: int | None = None
    retry_after_s: int | None = None
    burst: int = 1
    lose_answer: bool = False
    compiled: re.Pattern[str] = field(init=False, repr=False)
    burst_left: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.lose_answer:
            self.status = 0
        if self.status != 0 and not (self.status == 429 or 500 <= self.status <= 599):
            raise ValueError(f"fault status must be 0 (reset), 429 or 5xx, not {self.status}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"fault burst must be at least 1, not {self.burst}")
        self.compiled = re.compile(self.path_regex, re.IGNORECASE)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Fault:
        unknown = set(raw) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        lose_answer = raw.get("lose_answer", False)
        if not isinstance(lose_answer, bool):
            raise ValueError(f"fault lose_answer must be true or false, not {lose_answer!r}")
        return cls(
            path_regex=str(raw.get("path", raw.get("path_regex", ".*"))),
            status=0 if lose_answer else int(raw["status"]),
            method=(str(raw["method"]).upper() if raw.get("method") else None),
            rate=float(raw.get("rate", 1.0)),
            remaining=(int(raw["count"]) if raw.get("count") is not None else None),
            retry_after_s=(int(raw["retry_after_s"]) if raw.get("retry_after_s") is not None else None),
            burst=int(raw.get("burst", 1)),
            lose_answer=lose_answer,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path_regex,
            "status": self.status,
            "method": self.method,
            "rate": self.rate,
            "count": self.remaining,
            "retry_after_s": self.retry_after_s,
            "burst": self.burst,
            "lose_answer": self.lose_answer,
        }


FAULT_KEYS = {
    "path",
    "path_regex",
    "status",
    "method",
    "rate",
    "count",
    "retry_after_s",
    "burst",
    "lose_answer",
}


class Faults:
    def __init__(self, seed: int = 7) -> None:
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def set(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults = list(faults)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        self.set([])

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method and fault.method != method:
                    continue
                if fault.burst_left > 0 and fault.compiled.search(path):
                    fault.burst_left -= 1  # a storm, once started, answers every matching request
                    return fault
                if fault.remaining is not None and fault.remaining <= 0:
                    continue
                if not fault.compiled.search(path):
                    continue
                if self._random.random() >= fault.rate:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                fault.burst_left = fault.burst - 1
                return fault
        return None


@dataclass
class Latency:
    """Milliseconds added to each answer: a default, overridden per route template (substring match)."""

    default_ms: float = 0.0
    per_route_ms: dict[str, float] = field(default_factory=dict)

    def for_route(self, template: str) -> float:
        for fragment, ms in self.per_route_ms.items():
            if fragment.lower() in template.lower():
                return ms
        return self.default_ms

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Latency:
        return cls(
            default_ms=float(raw.get("default_ms", 0.0)),
            per_route_ms={str(k): float(v) for k, v in (raw.get("routes") or {}).items()},
        )


@dataclass
class LoggedRequest:
    at: datetime
    method: str
    path: str
    route: str  # the route template, or "" when nothing matched
    status: int
    subscription: str | None
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "status": self.status,
            "subscription": self.subscription,
            "kind": self.kind,
        }


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def counts(self) -> dict[str, int]:
        """Requests per "METHOD template"."""
        with self._lock:
            return dict(Counter(f"{e.method} {e.route}" for e in self._entries))

    def summary(self) -> dict[str, Any]:
        entries = self.entries()
        return {
            "total": len(entries),
            "writes": sum(1 for e in entries if e.kind == "write"),
            "throttled_429": sum(1 for e in entries if e.status == 429),
            "by_status": dict(Counter(str(e.status) for e in entries)),
            "by_route": self.counts(),
        }
