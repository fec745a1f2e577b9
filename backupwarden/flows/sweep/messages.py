"""The sweep's work items: what the planner puts on the sweep queue and the worker takes off it.

A work item carries the run it belongs to, its mode (dry run or not), the per-run cap when the
plan holds more candidates than the cap (`cap`; None: the plan fits, no worker needs to count),
and up to `batch_size` candidates of ONE vault, as discovery found them. A Storage queue message
holds at most 64 KiB; the host base64-encodes it, so the JSON stays under MESSAGE_BUDGET_BYTES.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backupwarden.domain.records import Candidate
from backupwarden.domain.times import parse_optional_time

FORMAT_VERSION = 1
MESSAGE_BUDGET_BYTES = 48_000  # base64 turns 48,000 bytes into 64,000 characters: under 64 KiB
DEFAULT_BATCH_SIZE = 20  # candidates per work item: see docs/benchmarks.md, "Sweep at scale"


class InvalidSweepWorkItem(ValueError):
    """A queue message that is not a sweep work item: reported, never retried."""


@dataclass(frozen=True)
class SweepWorkItem:
    run_id: str
    dry_run: bool
    candidates: tuple[Candidate, ...]
    cap: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "run_id": self.run_id,
                "dry_run": self.dry_run,
                "cap": self.cap,
                "candidates": [candidate_to_dict(c) for c in self.candidates],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SweepWorkItem:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also an integer too long, nesting too deep
            raise InvalidSweepWorkItem(f"not JSON: {str(exc)[:200]}") from None
        if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
            raise InvalidSweepWorkItem(f"not a sweep work item of format {FORMAT_VERSION}")
        try:
            cap = raw.get("cap")
            return cls(
                run_id=_text(raw["run_id"]),
                dry_run=bool(raw["dry_run"]),
                candidates=tuple(candidate_from_dict(c) for c in raw["candidates"]),
                cap=None if cap is None else int(cap),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: a cap of Infinity
            raise InvalidSweepWorkItem(f"malformed sweep work item: {exc!r}"[:300]) from exc
        except RecursionError:  # a tag value nested just shallow enough to parse, too deep to print
            raise InvalidSweepWorkItem("malformed sweep work item: nested too deeply") from None


def work_items(
    candidates: Iterable[Candidate],
    run_id: str,
    *,
    dry_run: bool,
    cap: int | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[SweepWorkItem]:
    """Consecutive candidates of one vault, at most `batch_size` of them and MESSAGE_BUDGET_BYTES of JSON.

    Discovery returns candidates ordered by id, so one vault's candidates are consecutive.
    """
    batch: list[Candidate] = []
    size = 0
    for candidate in candidates:
        encoded = len(json.dumps(candidate_to_dict(candidate), separators=(",", ":"))) + 1
        full = len(batch) >= batch_size or size + encoded > MESSAGE_BUDGET_BYTES - 200
        if batch and (full or batch[0].vault_id != candidate.vault_id):
            yield SweepWorkItem(run_id, dry_run, tuple(batch), cap)
            batch, size = [], 0
        batch.append(candidate)
        size += encoded
    if batch:
        yield SweepWorkItem(run_id, dry_run, tuple(batch), cap)


def candidate_to_dict(candidate: Candidate) -> dict[str, Any]:
    return {
        "subscription_id": candidate.subscription_id,
        "vault_id": candidate.vault_id,
        "container_name": candidate.container_name,
        "item_name": candidate.item_name,
        "vm_id": candidate.vm_id,
        "vm_name": candidate.vm_name,
        "configured_at": candidate.configured_at.isoformat() if candidate.configured_at else None,
        "vm_tags": candidate.vm_tags,
        "job_in_progress": candidate.job_in_progress,
    }


def candidate_from_dict(raw: dict[str, Any]) -> Candidate:
    if not isinstance(raw, dict):
        raise TypeError(f"a candidate must be an object, not {type(raw).__name__}")
    tags = raw.get("vm_tags") or {}
    if not isinstance(tags, dict):
        raise TypeError("vm_tags must be an object")
    return Candidate(
        subscription_id=_text(raw["subscription_id"]),
        vault_id=_text(raw["vault_id"]),
        container_name=_text(raw["container_name"]),
        item_name=_text(raw["item_name"]),
        vm_id=_text(raw["vm_id"]),
        vm_name=str(raw.get("vm_name") or ""),
        configured_at=_optional_time(raw.get("configured_at")),
        vm_tags={str(k): str(v) for k, v in tags.items()},
        job_in_progress=bool(raw.get("job_in_progress", False)),
    )


def _optional_time(value: Any) -> datetime | None:
    """A time as `candidate_to_dict` writes it; an absent or empty one is None."""
    if not value:
        return None
    if not isinstance(value, str):
        raise TypeError("fromisoformat: argument must be str")  # as datetime.fromisoformat words it
    return parse_optional_time(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value
