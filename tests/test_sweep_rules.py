"""The sweep's trigger decision, table-driven: every reason it can give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backupwarden.domain.failure_classes import FailureClass
from backupwarden.domain.records import Candidate, ItemState, LedgerView
from backupwarden.domain.sweep_rules import (
    SweepPolicy,
    TriggerDecision,
    decide_trigger,
    refuse_for_today,
    skip_before_verifying,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = SweepPolicy(grace_period=timedelta(hours=1), daily_budget=3, max_triggers_per_run=10)
PENDING = ItemState(protection_state="IRPending", last_backup_status="", has_recovery_point=False)
LONG_AGO = NOW - timedelta(hours=5)
NO_HISTORY = LedgerView()


def decide(
    item: ItemState = PENDING,
    ledger: LedgerView = NO_HISTORY,
    configured_at: datetime | None = LONG_AGO,
    triggered_this_run: int = 0,
    policy: SweepPolicy = POLICY,
) -> TriggerDecision:
    return decide_trigger(
        item,
        ledger,
        configured_at=configured_at,
        triggered_this_run=triggered_this_run,
        now=NOW,
        policy=policy,
    )


CASES = [
    ("eligible", {}, True, "initial backup pending since 2026-11-25T07:00Z"),
    (
        "already protected",
        {"item": ItemState("Protected", "Completed", True)},
        False,
        "not pending: protectionState is Protected",
    ),
    (
        "pending but has a recovery point",
        {"item": ItemState("IRPending", "Completed", True)},
        False,
        "not pending: protectionState is IRPending",
    ),
    (
        "protection error",
        {"item": ItemState("ProtectionError", "Failed", False)},
        False,
        "not pending: protectionState is ProtectionError",
    ),
    (
        "opted out",
        {"item": ItemState("IRPending", "", False, {"backupwarden:skip": "true"})},
        False,
        "opted out by tag backupwarden:skip",
    ),
    (
        "opt-out tag set to false",
        {"item": ItemState("IRPending", "", False, {"BackupWarden:Skip": "false"})},
        True,
        "initial backup pending since",
    ),
    (
        "unknown pending time",
        {"configured_at": None},
        False,
        "pending since an unknown time: the grace period starts when first seen",
    ),
    (
        "first seen long ago",
        {"configured_at": None, "ledger": LedgerView(first_seen=LONG_AGO)},
        True,
        "initial backup pending since 2026-11-25T07:00Z",
    ),
    (
        "within grace",
        {"configured_at": NOW - timedelta(minutes=20)},
        False,
        "within grace period (1h after 2026-11-25T11:40Z)",
    ),
    (
        "zero grace",
        {"configured_at": NOW, "policy": SweepPolicy(timedelta(0), 3, 10)},
        True,
        "initial backup pending",
    ),
    (
        "claimed by another run",
        {"ledger": LedgerView(claimed_by_other_run=True, attempts_today=1)},
        False,
        "another run is triggering this VM right now",
    ),
    (
        "earlier job running",
        {"ledger": LedgerView(1, "job-1", "InProgress")},
        False,
        "backup job job-1 triggered earlier today is still running",
    ),
    (
        "earlier job succeeded",
        {"ledger": LedgerView(1, "job-1", "Completed")},
        False,
        "backup job job-1 triggered earlier today succeeded",
    ),
    (
        "earlier job failed, budget left",
        {"ledger": LedgerView(1, "job-1", "Failed")},
        True,
        "initial backup pending",
    ),
    (
        "budget spent",
        {"ledger": LedgerView(3, "job-3", "Failed")},
        False,
        "daily budget spent (3 of 3 on-demand backups today)",
    ),
    (
        "budget above Azure's limit is capped at 9",
        {"ledger": LedgerView(9, "j", "Failed"), "policy": SweepPolicy(timedelta(hours=1), 12, 10)},
        False,
        "daily budget spent (9 of 9 on-demand backups today)",
    ),
    ("per-run cap", {"triggered_this_run": 10}, False, "per-run cap reached (10 triggers)"),
    (
        "earlier job failed for a reason a retry fixes",
        {"ledger": LedgerView(1, "job-1", "Failed", last_failure_code="BackUpOperationFailed")},
        True,
        "initial backup pending",
    ),
    (
        "earlier job failed for a reason nobody classified",
        {"ledger": LedgerView(1, "job-1", "Failed", last_failure_code="SomethingNew")},
        True,
        "initial backup pending",
    ),
    (
        "earlier job blocked by configuration",
        {"ledger": LedgerView(1, "job-1", None, last_failure_code="userErrorRequestDisallowedByPolicy")},
        False,
        "today's backup failed with userErrorRequestDisallowedByPolicy (escalate_config): a retry cannot"
        " fix it, it is escalated",
    ),
    (
        "earlier trigger failed for good",
        {"ledger": LedgerView(1, None, None, last_failure_code="UserErrorVmNotFoundV2")},
        False,
        "today's backup failed with UserErrorVmNotFoundV2 (escalate_permanent)",
    ),
    (
        "a class from the settings wins over the default",
        {
            "ledger": LedgerView(1, "job-1", "Failed", last_failure_code="BackUpOperationFailed"),
            "policy": SweepPolicy(
                timedelta(hours=1), 3, 10, {"BackUpOperationFailed": FailureClass.ESCALATE_PERMANENT}
            ),
        },
        False,
        "today's backup failed with BackUpOperationFailed (escalate_permanent)",
    ),
    (
        "a failure no retry fixes is named before a spent budget",
        {"ledger": LedgerView(3, "job-3", "Failed", last_failure_code="UserErrorVmNotFoundV2")},
        False,
        "today's backup failed with UserErrorVmNotFoundV2",
    ),
]


@pytest.mark.parametrize(("name", "given", "trigger", "reason"), CASES, ids=[c[0] for c in CASES])
def test_trigger_decision(name: str, given: dict[str, object], trigger: bool, reason: str) -> None:
    decision = decide(**given)  # type: ignore[arg-type]
    assert decision.trigger is trigger
    assert decision.reason.startswith(reason)


def _candidate(**changes: object) -> Candidate:
    fields: dict[str, object] = {
        "subscription_id": "s",
        "vault_id": "v",
        "container_name": "c",
        "item_name": "i",
        "vm_id": "vm",
        "vm_name": "n",
    }
    fields.update(changes)
    return Candidate(**fields)  # type: ignore[arg-type]


def test_opt_out_and_running_jobs_are_skipped_before_any_verification_read() -> None:
    opted_out = skip_before_verifying(_candidate(vm_tags={"backupwarden:skip": "yes"}))
    running = skip_before_verifying(_candidate(job_in_progress=True))
    assert opted_out == TriggerDecision(False, "opted out by tag backupwarden:skip")
    assert running == TriggerDecision(False, "a backup job is already in progress")
    assert skip_before_verifying(_candidate()) is None


LEDGER_CASES = [(name, given) for name, given, _, _ in CASES if isinstance(given, dict) and "ledger" in given]


@pytest.mark.parametrize(("name", "given"), LEDGER_CASES, ids=[c[0] for c in LEDGER_CASES])
def test_todays_record_adds_exactly_the_refusals_of_the_full_decision(
    name: str, given: dict[str, object]
) -> None:
    """A trigger decided with no record today needs only `refuse_for_today` once the record exists."""
    ledger, policy = given["ledger"], given.get("policy", POLICY)
    assert isinstance(ledger, LedgerView) and isinstance(policy, SweepPolicy)
    refusal = refuse_for_today(ledger, policy)
    full = decide(**given)  # type: ignore[arg-type]
    assert decide(policy=policy).trigger  # the item alone would trigger: only the record refuses
    if full.trigger:
        assert refusal is None
    else:
        assert refusal == full


def test_a_day_without_a_record_adds_no_refusal() -> None:
    assert refuse_for_today(LedgerView(first_seen=LONG_AGO), POLICY) is None
    assert refuse_for_today(NO_HISTORY, SweepPolicy(timedelta(hours=1), 1, 1)) is None
