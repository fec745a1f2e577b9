"""The report of one run of any flow: outcomes per VM and a summary, as printed and logged."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.records import SWEEP_RESULTS, Outcome, Result


@dataclass
class RunReport:
    run_id: str
    dry_run: bool
    started: datetime
    finished: datetime | None = None
    candidates: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    failure: Outcome | None = None  # what ended the run as a whole (discovery failed), when something did

    def summary(self) -> dict[str, Any]:
        by_result = Counter(o.result.value for o in self.outcomes)
        return {
            "candidates": self.candidates,
            "outcomes": len(self.outcomes),
            **{result.value: by_result.get(result.value, 0) for result in SWEEP_RESULTS},
            **{result: count for result, count in sorted(by_result.items())},
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
        }

    def to_json(self) -> dict[str, Any]:
        keys = ("vm_id", "vault_id", "action", "result", "reason", "job_id", "error_code")
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "summary": self.summary(),
            "outcomes": [{k: o.to_dict()[k] for k in keys} for o in self.outcomes],
        }

    def run_record(self, action: str, summary: str | None = None) -> Outcome:
        """The run itself as one record, the health the flow alerts watch: `failed` when the run
        failed as a whole, `partial` when some of its work failed, else `completed`. `summary`
        replaces the default "N candidates: counts by result"."""
        if summary is None:
            summary = f"{self.candidates} candidates: {self.counts()}"
        return run_outcome(self.run_id, action, self.outcomes, summary, self.failure)

    def counts(self) -> str:
        summary = self.summary()
        return ", ".join(f"{summary[r.value]} {r.value}" for r in SWEEP_RESULTS)


def run_outcome(
    run_id: str, action: str, outcomes: list[Outcome], summary: str, failure: Outcome | None = None
) -> Outcome:
    """The record of one run of a flow: `failed` with what ended it, `partial` when some of its
    decisions failed, `completed` otherwise; the reason leads with why, then the run's summary."""
    if failure is not None:
        return action_outcome(
            run_id,
            "",
            "",
            action,
            Result.FAILED,
            f"{failure.reason}; {summary}",
            error_code=failure.error_code,
        )
    failed = sum(1 for o in outcomes if o.result is Result.FAILED)
    if failed:
        return action_outcome(
            run_id, "", "", action, Result.PARTIAL, f"{failed} of {len(outcomes)} decisions failed; {summary}"
        )
    return action_outcome(run_id, "", "", action, Result.COMPLETED, summary)


def action_outcome(
    run_id: str,
    vm_id: str,
    vault_id: str,
    action: str,
    result: Result,
    reason: str,
    *,
    error: AzureCallError | None = None,
    job_id: str | None = None,
    error_code: str | None = None,
) -> Outcome:
    """One decision of any flow; a failed Azure call lends it its error code and message."""
    return Outcome(
        run_id=run_id,
        vm_id=vm_id,
        vault_id=vault_id,
        action=action,
        result=result,
        reason=reason,
        job_id=job_id,
        error_code=error.code if error else error_code,
        error_message=error.message if error else None,
    )
