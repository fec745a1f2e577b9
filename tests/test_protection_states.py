"""Every VM in exactly one protection state: each state from a hand-built VM, the precedence between
them, the ENROLL_EXISTING modes, the RPO a policy's schedule implies, and a property over any input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.domain.failure_classes import FailureClass
from backupwarden.domain.protection_states import (
    Action,
    BackupSchedule,
    EnrollExisting,
    JobFacts,
    ProtectedItemFacts,
    StateRules,
    VmFacts,
    VmState,
    classify,
    schedule_from_policy,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = StateRules(grace_period=timedelta(hours=1))
DAILY = BackupSchedule("Daily", run_times=(time(10, 0),))
SUB = "00000000-0000-0000-0000-000000000001"
VM = VmFacts(
    id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
    name="vm1",
    subscription_id=SUB,
    region="westeurope",
    resource_group="rg",
    created_at=NOW - timedelta(days=30),
)
VAULT = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/vault1"
PROTECTED = ProtectedItemFacts(
    vault_id=VAULT,
    protection_state="Protected",
    last_backup_status="Completed",
    last_recovery_point=NOW - timedelta(hours=10),
    protected_since=NOW - timedelta(days=20),
)


def run(
    vm: VmFacts = VM,
    item: ProtectedItemFacts | None = PROTECTED,
    schedule: BackupSchedule | None = DAILY,
    jobs: tuple[JobFacts, ...] = (),
    rules: StateRules = RULES,
):
    return classify(vm, item, schedule=schedule, jobs=jobs, rules=rules, now=NOW)


def failed_job(code: str) -> JobFacts:
    return JobFacts("Backup", "Failed", NOW - timedelta(hours=3), code)


# --- each state from a hand-built example -------------------------------------------------------


def test_excluded_by_the_opt_out_tag():
    result = run(vm=replace(VM, tags={"backupwarden:skip": "true"}))
    assert (result.state, result.action) == (VmState.EXCLUDED, Action.NONE)
    assert "backupwarden:skip" in result.reason


def test_new_vm_within_the_grace_period_is_left_to_the_new_vm_flow():
    result = run(vm=replace(VM, created_at=NOW - timedelta(minutes=20)), item=None)
    assert (result.state, result.action) == (VmState.NEW, Action.NONE)
    assert result.time_without_recovery_point == timedelta(minutes=20)


def test_unprotected_vm_past_the_grace_period_is_reported_by_default():
    result = run(item=None)
    assert (result.state, result.action) == (VmState.UNPROTECTED, Action.NONE)
    assert "ENROLL_EXISTING=off" in result.reason
    assert result.time_without_recovery_point == timedelta(days=30)
    assert not result.within_rpo


def test_pending_first_backup_past_the_grace_period_is_backed_up_now():
    item = ProtectedItemFacts(VAULT, "IRPending", protected_since=NOW - timedelta(hours=5))
    result = run(item=item)
    assert (result.state, result.action) == (VmState.PENDING_FIRST_BACKUP, Action.BACKUP_NOW)
    assert result.time_without_recovery_point == timedelta(hours=5)


def test_pending_first_backup_within_the_grace_period_waits():
    item = ProtectedItemFacts(VAULT, "IRPending", protected_since=NOW - timedelta(minutes=10))
    result = run(item=item)
    assert (result.state, result.action) == (VmState.PENDING_FIRST_BACKUP, Action.NONE)
    assert "grace period" in result.reason


def test_protected_with_a_recovery_point_within_the_rpo_is_current():
    result = run()
    assert (result.state, result.action) == (VmState.PROTECTED_CURRENT, Action.NONE)
    assert result.within_rpo
    assert result.time_without_recovery_point == timedelta(hours=10)


def test_recovery_point_older_than_rpo_plus_tolerance_is_stale():
    # daily: 24h + 6h tolerance; 31h is one scheduled backup missed
    result = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(hours=31)))
    assert (result.state, result.action) == (VmState.STALE, Action.BACKUP_NOW)
    assert not result.within_rpo
    assert "24h" in result.reason


def test_rpo_tolerance_boundary():
    at_limit = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(hours=30)))
    past_limit = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(hours=30, minutes=1)))
    assert at_limit.state == VmState.PROTECTED_CURRENT
    assert past_limit.state == VmState.STALE


def test_stale_with_a_running_backup_job_waits_for_it():
    stale = replace(PROTECTED, last_recovery_point=NOW - timedelta(days=3))
    result = run(item=stale, jobs=(JobFacts("Backup", "InProgress", NOW - timedelta(minutes=5)),))
    assert (result.state, result.action) == (VmState.STALE, Action.NONE)


def test_weekly_policy_allows_a_week_old_recovery_point():
    weekly = BackupSchedule("Weekly", run_times=(time(2, 0),), run_days=("Sunday",))
    result = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(days=6)), schedule=weekly)
    assert result.state == VmState.PROTECTED_CURRENT
    # without the schedule a daily RPO is assumed, and the reason says so
    unknown = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(days=6)), schedule=None)
    assert unknown.state == VmState.STALE
    assert "schedule unknown" in unknown.reason


def test_protected_without_any_recovery_point_is_stale_since_protection_began():
    result = run(item=replace(PROTECTED, last_recovery_point=None))
    assert result.state == VmState.STALE
    assert result.time_without_recovery_point == timedelta(days=20)


@pytest.mark.parametrize(
    ("code", "action", "failure"),
    [
        ("BackUpOperationFailed", Action.BACKUP_NOW, FailureClass.RETRY),
        ("UserErrorGuestAgentStatusUnavailable", Action.BACKUP_NOW, FailureClass.RETRY_CAPPED),
        ("UserErrorRequestDisallowedByPolicy", Action.ESCALATE, FailureClass.ESCALATE_CONFIG),
        ("UserErrorUnsupportedDiskSize", Action.ESCALATE, FailureClass.ESCALATE_PERMANENT),
        ("SomethingNobodyClassified", Action.ESCALATE, None),
    ],
)
def test_protection_error_takes_the_error_class_of_the_last_failed_job(code, action, failure):
    result = run(item=replace(PROTECTED, protection_state="ProtectionError"), jobs=(failed_job(code),))
    assert (result.state, result.action, result.failure_class) == (VmState.FAILING, action, failure)
    assert code in result.reason
    assert bool(result.recommendation) == (action == Action.ESCALATE)


def test_failing_uses_the_newest_failed_job():
    jobs = (
        JobFacts("Backup", "Failed", NOW - timedelta(hours=30), "UserErrorUnsupportedDiskSize"),
        JobFacts("Backup", "Failed", NOW - timedelta(hours=2), "BackUpOperationFailed"),
    )
    result = run(item=replace(PROTECTED, protection_state="ProtectionError"), jobs=jobs)
    assert result.failure_class == FailureClass.RETRY


def test_health_action_required_is_failing_even_with_a_fresh_recovery_point():
    result = run(item=replace(PROTECTED, health_status="ActionRequired"))
    assert (result.state, result.action) == (VmState.FAILING, Action.ESCALATE)
    assert result.failure_class is None
    assert result.recommendation
    assert result.within_rpo  # still recoverable from that point: counts towards coverage


def test_health_action_suggested_stays_current_and_says_so():
    result = run(item=replace(PROTECTED, health_status="ActionSuggested"))
    assert result.state == VmState.PROTECTED_CURRENT
    assert "ActionSuggested" in result.reason


@pytest.mark.parametrize("state", ["ProtectionStopped", "BackupsSuspended", "ProtectionPaused"])
def test_stopped_protection_is_escalated(state):
    result = run(item=replace(PROTECTED, protection_state=state))
    assert (result.state, result.action) == (VmState.STOPPED, Action.ESCALATE)
    assert state in result.reason
    assert result.recommendation


def test_soft_deleted_as_recorded_stopped_and_scheduled_for_deferred_delete():
    # ../shared/recordings/azure-cli-backup/test_backup_softdelete.yaml: a soft-deleted item reads
    # protectionState ProtectionStopped with isScheduledForDeferredDelete true
    item = replace(PROTECTED, protection_state="ProtectionStopped", is_scheduled_for_deferred_delete=True)
    result = run(item=item)
    assert (result.state, result.action) == (VmState.SOFT_DELETED, Action.ESCALATE)
    assert "undelete" in result.recommendation
    assert not result.within_rpo  # its 10h-old recovery point restores nothing until undeleted


def test_soft_deleted_as_a_protection_state():
    result = run(item=replace(PROTECTED, protection_state="SoftDeleted"))
    assert result.state == VmState.SOFT_DELETED


def test_orphaned_item_of_a_vm_that_no_longer_exists():
    result = run(vm=replace(VM, exists=False))
    assert (result.state, result.action) == (VmState.ORPHANED, Action.ESCALATE)
    assert "no longer exists" in result.reason
    assert "vault1" in result.reason


def test_a_gone_vm_without_an_item_is_refused():
    with pytest.raises(ValueError, match="does not exist"):
        run(vm=replace(VM, exists=False), item=None)


def test_not_protected_item_counts_as_no_item():
    result = run(item=ProtectedItemFacts(VAULT, "NotProtected"))
    assert result.state == VmState.UNPROTECTED


# --- precedence --------------------------------------------------------------------------------


def test_excluded_comes_before_every_other_state():
    tagged = replace(VM, tags={"BackupWarden:Skip": "yes"})
    for item in (None, replace(PROTECTED, protection_state="ProtectionError"), PROTECTED):
        assert run(vm=tagged, item=item).state == VmState.EXCLUDED
    assert run(vm=replace(tagged, exists=False)).state == VmState.EXCLUDED


def test_an_opt_out_tag_set_to_false_does_not_exclude():
    assert run(vm=replace(VM, tags={"backupwarden:skip": "false"})).state == VmState.PROTECTED_CURRENT


def test_orphaned_comes_before_the_items_own_state():
    gone = replace(VM, exists=False)
    for state in ("ProtectionError", "ProtectionStopped", "IRPending"):
        assert run(vm=gone, item=replace(PROTECTED, protection_state=state)).state == VmState.ORPHANED
    deferred = replace(PROTECTED, is_scheduled_for_deferred_delete=True)
    assert run(vm=gone, item=deferred).state == VmState.ORPHANED


def test_soft_deleted_comes_before_stopped_and_stopped_before_failing():
    soft = replace(PROTECTED, protection_state="ProtectionStopped", is_scheduled_for_deferred_delete=True)
    assert run(item=soft).state == VmState.SOFT_DELETED
    stopped_unhealthy = replace(
        PROTECTED, protection_state="ProtectionStopped", health_status="ActionRequired"
    )
    assert run(item=stopped_unhealthy).state == VmState.STOPPED


def test_failing_comes_before_pending_and_stale():
    pending_unhealthy = ProtectedItemFacts(VAULT, "IRPending", health_status="ActionRequired")
    assert run(item=pending_unhealthy).state == VmState.FAILING
    stale_unhealthy = replace(
        PROTECTED, health_status="ActionRequired", last_recovery_point=NOW - timedelta(days=9)
    )
    assert run(item=stale_unhealthy).state == VmState.FAILING


def test_a_protected_vm_is_never_new_however_young():
    young = replace(VM, created_at=NOW - timedelta(minutes=5))
    assert run(vm=young).state == VmState.PROTECTED_CURRENT


def test_a_running_job_holds_back_a_retry_of_a_failing_item():
    jobs = (failed_job("BackUpOperationFailed"), JobFacts("Backup", "InProgress", NOW))
    result = run(item=replace(PROTECTED, protection_state="ProtectionError"), jobs=jobs)
    assert (result.state, result.action) == (VmState.FAILING, Action.NONE)


# --- ENROLL_EXISTING --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "tags", "action"),
    [
        (EnrollExisting.OFF, {"backupwarden:enroll": "true"}, Action.NONE),
        (EnrollExisting.TAGGED, {}, Action.NONE),
        (EnrollExisting.TAGGED, {"backupwarden:enroll": "false"}, Action.NONE),
        (EnrollExisting.TAGGED, {"BackupWarden:Enroll": "True"}, Action.ENROLL),
        (EnrollExisting.ALL, {}, Action.ENROLL),
    ],
)
def test_enroll_existing_modes(mode, tags, action):
    result = run(vm=replace(VM, tags=tags), item=None, rules=replace(RULES, enroll_existing=mode))
    assert (result.state, result.action) == (VmState.UNPROTECTED, action)


def test_enroll_all_still_leaves_new_vms_to_the_new_vm_flow():
    young = replace(VM, created_at=NOW - timedelta(minutes=5))
    result = run(vm=young, item=None, rules=replace(RULES, enroll_existing=EnrollExisting.ALL))
    assert (result.state, result.action) == (VmState.NEW, Action.NONE)


# --- the RPO a policy's schedule implies ------------------------------------------------------


def test_rpo_from_the_rest_api_schedule_shapes():
    # schedulePolicy bodies of examples/AzureIaasVm/V2Policy/IaaS_v2_daily.json and IaaS_v2_hourly.json
    # (azure-rest-api-specs, recoveryservicesbackup stable/2024-04-01)
    daily_v2 = {
        "schedulePolicyType": "SimpleSchedulePolicyV2",
        "scheduleRunFrequency": "Daily",
        "dailySchedule": {"scheduleRunTimes": ["2018-01-24T10:00:00Z"]},
    }
    hourly_v2 = {
        "schedulePolicyType": "SimpleSchedulePolicyV2",
        "scheduleRunFrequency": "Hourly",
        "hourlySchedule": {
            "interval": 4,
            "scheduleWindowDuration": 16,
            "scheduleWindowStartTime": "2021-12-17T08:00:00Z",
        },
    }
    weekly_v1 = {
        "schedulePolicyType": "SimpleSchedulePolicy",
        "scheduleRunFrequency": "Weekly",
        "scheduleRunDays": ["Monday", "Thursday"],
        "scheduleRunTimes": ["2018-01-24T02:00:00Z"],
    }
    assert schedule_from_policy(daily_v2).rpo == timedelta(hours=24)
    assert schedule_from_policy(daily_v2).run_times == (time(10, 0),)
    # 08:00, 12:00, 16:00, 20:00, then 08:00 the next day: 12h is the longest gap
    hourly = schedule_from_policy(hourly_v2)
    assert (hourly.hourly_interval, hourly.window_hours, hourly.window_start) == (4, 16, time(8, 0))
    assert hourly.rpo == timedelta(hours=12)
    # Monday -> Thursday is 3 days, Thursday -> Monday 4
    assert schedule_from_policy(weekly_v1).rpo == timedelta(days=4)


@pytest.mark.parametrize(
    ("schedule", "rpo"),
    [
        (BackupSchedule("Hourly", hourly_interval=4), timedelta(hours=4)),
        (BackupSchedule("Hourly", hourly_interval=6, window_hours=12), timedelta(hours=18)),
        (BackupSchedule("Weekly", run_days=("Sunday",)), timedelta(days=7)),
        (BackupSchedule("Daily", run_times=(time(1, 0), time(13, 0))), timedelta(hours=12)),
        (BackupSchedule("Daily"), timedelta(hours=24)),
    ],
)
def test_rpo_of_each_schedule_kind(schedule, rpo):
    assert schedule.rpo == rpo


def test_hourly_policy_makes_a_day_old_recovery_point_stale():
    hourly = BackupSchedule("Hourly", hourly_interval=4)
    result = run(item=replace(PROTECTED, last_recovery_point=NOW - timedelta(hours=11)), schedule=hourly)
    assert result.state == VmState.STALE
    assert run(
        schedule=hourly, item=replace(PROTECTED, last_recovery_point=NOW - timedelta(hours=9))
    ).state == (VmState.PROTECTED_CURRENT)


# --- any input: exactly one state and a reason ------------------------------------------------

moments = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=60)).map(lambda d: NOW - d),
)
tag_sets = st.dictionaries(
    st.sampled_from(["backupwarden:skip", "BackupWarden:Enroll", "backupwarden:enroll", "env"]),
    st.sampled_from(["true", "false", "yes", "0", ""]),
    max_size=3,
)
vms = st.builds(
    VmFacts,
    id=st.just(VM.id),
    name=st.just("vm1"),
    subscription_id=st.just(SUB),
    region=st.sampled_from(["westeurope", "northeurope"]),
    resource_group=st.just("rg"),
    tags=tag_sets,
    created_at=moments,
    exists=st.booleans(),
)
items = st.one_of(
    st.none(),
    st.builds(
        ProtectedItemFacts,
        vault_id=st.just(VAULT),
        protection_state=st.sampled_from(
            [
                "IRPending",
                "Protected",
                "ProtectionError",
                "ProtectionStopped",
                "ProtectionPaused",
                "BackupsSuspended",
                "SoftDeleted",
                "Invalid",
                "NotProtected",
                "SomethingNew",
            ]
        ),
        health_status=st.sampled_from(["Passed", "ActionRequired", "ActionSuggested", "Invalid"]),
        last_recovery_point=moments,
        protected_since=moments,
        is_scheduled_for_deferred_delete=st.booleans(),
    ),
)
schedules = st.one_of(
    st.none(),
    st.builds(
        BackupSchedule,
        frequency=st.sampled_from(["Daily", "Weekly", "Hourly", "Invalid"]),
        run_times=st.lists(st.times(), max_size=3).map(tuple),
        run_days=st.lists(st.sampled_from(["Monday", "Wednesday", "Sunday"]), max_size=3).map(tuple),
        hourly_interval=st.sampled_from([0, 4, 6, 8, 12]),
        window_hours=st.integers(min_value=1, max_value=24),
    ),
)
job_lists = st.lists(
    st.builds(
        JobFacts,
        operation=st.just("Backup"),
        status=st.sampled_from(["InProgress", "Completed", "Failed", "Cancelling"]),
        start_time=moments,
        error_code=st.sampled_from(["", "BackUpOperationFailed", "UserErrorUnsupportedDiskSize", "Odd"]),
    ),
    max_size=3,
).map(tuple)
rule_sets = st.builds(
    StateRules,
    grace_period=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=7)),
    enroll_existing=st.sampled_from(list(EnrollExisting)),
)


@settings(max_examples=300, deadline=None)
@given(vm=vms, item=items, schedule=schedules, jobs=job_lists, rules=rule_sets)
def test_any_input_yields_exactly_one_state_with_a_reason(vm, item, schedule, jobs, rules):
    if not vm.exists and item is None:
        with pytest.raises(ValueError):
            classify(vm, item, schedule=schedule, jobs=jobs, rules=rules, now=NOW)
        return
    result = classify(vm, item, schedule=schedule, jobs=jobs, rules=rules, now=NOW)
    assert isinstance(result.state, VmState)
    assert isinstance(result.action, Action)
    assert result.reason.strip()
    assert bool(result.recommendation) == (result.action == Action.ESCALATE)
    if result.time_without_recovery_point is not None:
        assert result.time_without_recovery_point >= timedelta(0)
    # the states that need an item never come without one, and within_rpo needs a recovery point
    if item is None or item.protection_state == "NotProtected":
        assert result.state in (VmState.EXCLUDED, VmState.NEW, VmState.UNPROTECTED)
    if result.within_rpo:
        assert item is not None and item.last_recovery_point is not None
    if result.action == Action.ENROLL:
        assert result.state == VmState.UNPROTECTED and rules.enroll_existing != EnrollExisting.OFF
