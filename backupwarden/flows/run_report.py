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

    def run_record(self, action: str) -> Outcome:
        """The run itself as one decision record: the heartbeat the "automation silent" alert watches."""
        summary = self.summary()
        counts = ", ".join(f"{summary[r.value]} {r.value}" for r in SWEEP_RESULTS)
        return action_outcome(
            self.run_id, "", "", action, Result.COMPLETED, f"{self.candidates} candidates: {counts}"
        )


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
