"""Coverage against a hand-counted estate: 14 VMs over 2 subscriptions and 2 regions, every figure
below counted by hand from the table in `ESTATE`."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from backupwarden.domain.coverage import CoverageFigure, coverage
from backupwarden.domain.protection_states import (
    BackupSchedule,
    Classification,
    ProtectedItemFacts,
    StateRules,
    VmFacts,
    VmState,
    classify,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = StateRules(grace_period=timedelta(hours=1))
DAILY = BackupSchedule("Daily", run_times=(time(10, 0),))
WEEKLY = BackupSchedule("Weekly", run_times=(time(2, 0),), run_days=("Sunday",))
SUB_A = "aaaaaaaa-0000-0000-0000-000000000000"
SUB_B = "bbbbbbbb-0000-0000-0000-000000000000"
VAULT = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/vault1"
H = timedelta(hours=1)
D = timedelta(days=1)


def vm(name: str, sub: str, region: str, *, created: timedelta | None = 60 * D, **extra) -> VmFacts:
    return VmFacts(
        id=f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
        name=name,
        subscription_id=sub,
        region=region,
        resource_group="rg",
        created_at=None if created is None else NOW - created,
        **extra,
    )


def item(
    state: str = "Protected",
    rp_age: timedelta | None = None,
    protected_for: timedelta = 50 * D,
    **extra,
) -> ProtectedItemFacts:
    return ProtectedItemFacts(
        vault_id=VAULT,
        protection_state=state,
        last_recovery_point=None if rp_age is None else NOW - rp_age,
        protected_since=NOW - protected_for,
        **extra,
    )


# VM, its item, its policy schedule; the comments give the state and the time without a recovery point
ESTATE: list[tuple[VmFacts, ProtectedItemFacts | None, BackupSchedule | None]] = [
    # subscription A, westeurope
    (vm("a1", SUB_A, "westeurope"), item(rp_age=10 * H), DAILY),  # current: covered
    (vm("a2", SUB_A, "westeurope"), item(rp_age=3 * D), DAILY),  # stale: 3d
    (vm("a3", SUB_A, "westeurope", tags={"backupwarden:skip": "true"}), None, None),  # excluded
    (vm("a7", SUB_A, "WestEurope"), item(rp_age=5 * D), WEEKLY),  # current (weekly): covered
    # subscription A, northeurope
    (vm("a4", SUB_A, "northeurope"), item(rp_age=2 * H), DAILY),  # current: covered
    (vm("a5", SUB_A, "northeurope", created=40 * D), None, None),  # unprotected: 40d
    (vm("a6", SUB_A, "northeurope"), item(rp_age=5 * H, health_status="ActionRequired"), DAILY),
    # ^ failing, but its recovery point is 5h old: covered
    # subscription B, westeurope
    (vm("b1", SUB_B, "westeurope"), item(rp_age=20 * H), DAILY),  # current: covered
    (vm("b2", SUB_B, "westeurope"), item("IRPending", protected_for=5 * H), DAILY),  # pending: 5h
    (vm("b3", SUB_B, "westeurope", exists=False), item(rp_age=100 * D), DAILY),  # orphaned: not a VM
    # subscription B, northeurope
    (vm("b4", SUB_B, "northeurope"), item("ProtectionStopped", rp_age=10 * D), DAILY),  # stopped: 10d
    (vm("b5", SUB_B, "northeurope"), item(rp_age=2 * H, is_scheduled_for_deferred_delete=True), DAILY),
    # ^ soft-deleted: not restorable until undeleted, so not covered: 2h
    (vm("b6", SUB_B, "northeurope", created=20 * timedelta(minutes=1)), None, None),  # new: 20m
    (vm("b7", SUB_B, "northeurope", created=None), None, None),  # unprotected, age unknown
]


def classified() -> list[Classification]:
    return [
        classify(facts, protected, schedule=schedule, rules=RULES, now=NOW)
        for facts, protected, schedule in ESTATE
    ]


def test_the_estate_is_classified_as_written_above():
    states = {c.vm.name: c.state for c in classified()}
    assert states == {
        "a1": VmState.PROTECTED_CURRENT,
        "a2": VmState.STALE,
        "a3": VmState.EXCLUDED,
        "a7": VmState.PROTECTED_CURRENT,
        "a4": VmState.PROTECTED_CURRENT,
        "a5": VmState.UNPROTECTED,
        "a6": VmState.FAILING,
        "b1": VmState.PROTECTED_CURRENT,
        "b2": VmState.PENDING_FIRST_BACKUP,
        "b3": VmState.ORPHANED,
        "b4": VmState.STOPPED,
        "b5": VmState.SOFT_DELETED,
        "b6": VmState.NEW,
        "b7": VmState.UNPROTECTED,
    }


def test_coverage_in_total_per_subscription_and_per_region():
    report = coverage(classified())
    # in scope: 14 minus a3 (excluded) and b3 (orphaned) = 12; covered: a1 a7 a4 a6 b1 = 5
    assert report.total == CoverageFigure("total", in_scope=12, covered=5)
    assert report.total.percent == pytest.approx(41.667, abs=0.001)
    # A: a1 a2 a7 a4 a5 a6 = 6, covered a1 a7 a4 a6 = 4; B: b1 b2 b4 b5 b6 b7 = 6, covered b1 = 1
    assert report.by_subscription == (
        CoverageFigure(SUB_A, in_scope=6, covered=4),
        CoverageFigure(SUB_B, in_scope=6, covered=1),
    )
    assert report.by_subscription[0].percent == pytest.approx(66.667, abs=0.001)
    assert report.by_subscription[1].percent == pytest.approx(16.667, abs=0.001)
    # northeurope: a4 a5 a6 b4 b5 b6 b7 = 7, covered a4 a6 = 2
    # westeurope: a1 a2 a7 (WestEurope) b1 b2 = 5, covered a1 a7 b1 = 3
    assert report.by_region == (
        CoverageFigure("northeurope", in_scope=7, covered=2),
        CoverageFigure("westeurope", in_scope=5, covered=3),
    )
    assert report.by_region[0].percent == pytest.approx(28.571, abs=0.001)
    assert report.by_region[1].percent == pytest.approx(60.0)


def test_worst_offenders_longest_without_a_recovery_point_first():
    report = coverage(classified())
    # uncovered in scope: b7 (unknown), a5 40d, b4 10d, a2 3d, b2 5h, b5 2h, b6 20m
    assert [c.vm.name for c in report.worst_offenders] == ["b7", "a5", "b4", "a2", "b2", "b5", "b6"]
    assert [c.time_without_recovery_point for c in report.worst_offenders] == [
        None,
        40 * D,
        10 * D,
        3 * D,
        5 * H,
        2 * H,
        timedelta(minutes=20),
    ]
    assert [c.vm.name for c in coverage(classified(), worst=3).worst_offenders] == ["b7", "a5", "b4"]


def test_no_vm_in_scope_has_no_percentage():
    excluded_and_orphaned = [c for c in classified() if c.vm.name in ("a3", "b3")]
    report = coverage(excluded_and_orphaned)
    assert report.total == CoverageFigure("total", in_scope=0, covered=0)
    assert report.total.percent is None
    assert report.by_subscription == () and report.by_region == () and report.worst_offenders == ()
    assert coverage([]).total.percent is None


def test_every_vm_covered_is_one_hundred_percent():
    current = [c for c in classified() if c.state == VmState.PROTECTED_CURRENT]
    assert coverage(current).total.percent == 100.0
