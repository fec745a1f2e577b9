"""When the sweep clicks "Backup now" for an item stuck in initial-backup-pending, and why not otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from backupwarden.domain.failure_classes import FailureClass, classify
from backupwarden.domain.records import Candidate, ItemState, LedgerView

OPT_OUT_TAG = "backupwarden:skip"
HARD_DAILY_LIMIT = 9  # Azure's on-demand backups per item per day
RUNNING_JOB_STATUSES = frozenset({"InProgress", "Cancelling"})
SUCCEEDED_JOB_STATUSES = frozenset({"Completed", "CompletedWithWarnings"})
# a retry cannot fix these; remediation escalates them (azure-facts §7)
NOT_RETRIED_FAILURES = frozenset({FailureClass.ESCALATE_CONFIG, FailureClass.ESCALATE_PERMANENT})


@dataclass(frozen=True)
class SweepPolicy:
    grace_period: timedelta
    daily_budget: int
    max_triggers_per_run: int
    failure_classes: Mapping[str, FailureClass] = field(default_factory=dict)  # beyond the defaults


@dataclass(frozen=True)
class TriggerDecision:
    trigger: bool
    reason: str


def skip_before_verifying(candidate: Candidate) -> TriggerDecision | None:
    """Refusals discovery already proves, so no verification read is spent on them."""
    if opted_out(candidate.vm_tags):
        return TriggerDecision(False, f"opted out by tag {OPT_OUT_TAG}")
    if candidate.job_in_progress:
        return TriggerDecision(False, "a backup job is already in progress")
    return None


def decide_trigger(
    item: ItemState,
    ledger: LedgerView,
    *,
    configured_at: datetime | None,
    triggered_this_run: int,
    now: datetime,
    policy: SweepPolicy,
) -> TriggerDecision:
    """Trigger "Backup now" only for an eligible IRPending item; every refusal names its rule."""
    if item.protection_state != "IRPending" or item.has_recovery_point:
        return TriggerDecision(False, f"not pending: protectionState is {item.protection_state}")
    if opted_out(item.vm_tags):
        return TriggerDecision(False, f"opted out by tag {OPT_OUT_TAG}")
    pending_since = configured_at or ledger.first_seen
    if pending_since is None:
        return TriggerDecision(
            False, "pending since an unknown time: the grace period starts when first seen"
        )
    if now - pending_since < policy.grace_period:
        return TriggerDecision(
            False,
            f"within grace period ({_human(policy.grace_period)} after {pending_since:%Y-%m-%dT%H:%MZ})",
        )
    refusal = refuse_for_today(ledger, policy)
    if refusal is not None:
        return refusal
    if triggered_this_run >= policy.max_triggers_per_run:
        return TriggerDecision(False, f"per-run cap reached ({policy.max_triggers_per_run} triggers)")
    return TriggerDecision(True, f"initial backup pending since {pending_since:%Y-%m-%dT%H:%MZ}")


def refuse_for_today(ledger: LedgerView, policy: SweepPolicy) -> TriggerDecision | None:
    """The refusals today's ledger record adds (None: it adds none). A day with no record adds none,
    so a trigger decided with an empty view needs only these once the record turns out to exist."""
    if ledger.claimed_by_other_run:
        return TriggerDecision(False, "another run is triggering this VM right now")
    if ledger.last_job_status in RUNNING_JOB_STATUSES:
        return TriggerDecision(
            False, f"backup job {ledger.last_job_id} triggered earlier today is still running"
        )
    if ledger.last_job_status in SUCCEEDED_JOB_STATUSES:
        return TriggerDecision(False, f"backup job {ledger.last_job_id} triggered earlier today succeeded")
    failure = not_retried_failure(ledger.last_failure_code, policy)
    if failure is not None:
        return TriggerDecision(
            False,
            f"today's backup failed with {ledger.last_failure_code} ({failure}): a retry cannot fix it,"
            " it is escalated",
        )
    budget = min(policy.daily_budget, HARD_DAILY_LIMIT)
    if ledger.attempts_today >= budget:
        return TriggerDecision(
            False, f"daily budget spent ({ledger.attempts_today} of {budget} on-demand backups today)"
        )
    return None


def not_retried_failure(code: str | None, policy: SweepPolicy) -> FailureClass | None:
    """The class of a failure code when it is one a retry cannot fix, else None."""
    found = classify(code, dict(policy.failure_classes)) if code else None
    return found if found in NOT_RETRIED_FAILURES else None


def opted_out(tags: dict[str, str]) -> bool:
    for key, value in tags.items():
        if key.lower() == OPT_OUT_TAG and value.strip().lower() not in ("false", "0", "no"):
            return True
    return False


def _human(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
