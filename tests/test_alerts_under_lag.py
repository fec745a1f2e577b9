"""The deployed alert rules under the lag Azure has: Resource Graph trailing the vault, outcomes shipped
when the outcomes run gets to them, Logs Ingestion making rows queryable minutes after the upload.

The emulator's evaluator runs each rule as alerts.bicep deploys it (its KQL file, window, frequency and
dimensions from backupwarden/domain/alert_rules.py) on the emulated clock, every `frequency` from the
moment the rule is added, and POSTs to `alert_webhook` served on loopback. The clock stands still
between `advance()` calls. The figures these tests measure are quoted in docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from backupwarden.domain.alert_rules import BACKUP_FAILED, STILL_UNPROTECTED
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.records import Result
from devtools.demo import DEMO_WORKSPACE_ID
from emulator.monitor.alerts import AlertRule
from tests.alert_webhook_fixtures import handlers_fixture  # noqa: F401
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, dimensions, remediation_scenario, serving

Functions = dict[str, Callable[..., Any]]
API_03 = vm_id_of(PROD, "rg-api", "api-03").lower()
DB_02 = vm_id_of(PROD, "rg-db", "db-02").lower()
INGESTION_DELAY = timedelta(minutes=2)  # Logs Ingestion: rows queryable 2 minutes after the upload
RESOURCE_GRAPH_LAG = timedelta(minutes=1)  # jobs show up in Resource Graph a minute after the vault


def lagging_scenario(*vm_names: str) -> dict[str, Any]:
    """The demo estate cut to the named VMs, with ingestion and Resource Graph lag on."""
    scenario = remediation_scenario(*vm_names)
    scenario["monitor"] = {"ingestion_delay_s": INGESTION_DELAY.total_seconds()}
    scenario["resource_graph"] = {"lag_s": RESOURCE_GRAPH_LAG.total_seconds()}
    return scenario


def deployed_rule(bench: RemediationBench, name: str) -> AlertRule:
    return bench.monitor.alerts.rules[name.lower()]


def ingested_after_end(bench: RemediationBench) -> list[tuple[str, timedelta]]:
    """(job id, ingestion_time() - EndTime) of every failed job outcome, as Log Analytics shows them."""
    result = bench.monitor.query(
        DEMO_WORKSPACE_ID,
        f'{JOB_OUTCOMES.table} | where Status == "Failed"'
        " | project JobId, EndTime, Ingested = ingestion_time()",
    )
    rows = [dict(zip([c for c, _ in result.columns], row, strict=True)) for row in result.rows]
    return [(r["JobId"], _time(r["Ingested"]) - _time(r["EndTime"])) for r in rows]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- backup failed -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "late",
    [timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=3)],
    ids=["5min", "30min", "3h"],
)
def test_a_failure_ingested_late_alerts_once_and_is_retried_once(
    remediation_bench: RemediationBench, handlers: Functions, late: timedelta
) -> None:
    """api-03's backup fails once; its outcome reaches the table `late` after the job ended (the outcomes
    run comes late, then ingestion takes its 2 minutes). The rule was deployed before the backup, so it
    evaluates every 5 minutes throughout."""
    bench = remediation_bench
    bench.load(lagging_scenario("api-03"))
    job_length = timedelta(seconds=bench.emulator.estate.timings.backup_job_s)
    worker = bench.remediation()
    with serving(handlers["alert_webhook"]) as host:
        bench.add_rules(host.url, BACKUP_FAILED)
        bench.backup_now(API_03)
        bench.emulator.advance((job_length + late - INGESTION_DELAY).total_seconds())
        bench.ship()  # the failed job, uploaded now: queryable INGESTION_DELAY later
        bench.emulator.advance((INGESTION_DELAY + BACKUP_FAILED.frequency).total_seconds())
        assert bench.monitor.wait_for_deliveries(timeout_s=30)
        first = bench.drain(worker)
        # hours more of evaluations, the retry's job ends (it completes) and ships, and evaluations go on
        for _ in range(4):
            bench.emulator.advance(job_length.total_seconds())
            bench.ship()
        assert bench.monitor.wait_for_deliveries(timeout_s=30)
        later = bench.drain(worker)

    [(failed_job, arrived_after)] = ingested_after_end(bench)
    assert arrived_after == late
    assert deployed_rule(bench, BACKUP_FAILED.name).last_error is None
    [fired] = bench.notifications(BACKUP_FAILED.name, vm="api-03")
    assert dimensions(fired) == {"VmId": API_03, "ErrorCode": "BackUpOperationFailed", "JobId": failed_job}
    assert [(o.vm_id, o.result) for o in first] == [(API_03, Result.TRIGGERED)]
    assert first[0].reason.startswith("BackUpOperationFailed: retry, retry 1; backup job ")
    assert later == [], "no second notification, no second work item"
    assert bench.backup_posts_per_vm()["api-03"] == 2, "the failed backup and one retry"
    assert bench.protected_item(API_03)["properties"]["lastBackupStatus"] == "Completed"


# --- still unprotected ---------------------------------------------------------------------------
SWEEP_EVERY = timedelta(minutes=110)  # the timer's is 30: this sweep misses runs, as a sick host would


def test_a_vm_unprotected_for_3_days_alerts_at_every_evaluation_until_it_gets_a_recovery_point(
    remediation_bench: RemediationBench,
) -> None:
    """db-02's agent fails every backup: the sweep keeps trying within its budget and records its decision
    every SWEEP_EVERY, the outcomes ship, and the rule evaluates hourly. After 3 days the owner fixes the
    agent and someone clicks "Backup now": the recovery point resolves the alert.

    The evaluator resolves an alert at the first evaluation its condition fails (Azure waits two
    periods), so one Fired and one Resolved notification mean it held at every evaluation in between."""
    bench = remediation_bench
    scenario = lagging_scenario("db-02")
    for vm in scenario["subscriptions"][0]["vms"]:
        vm["fail_next"] = {"code": "UserErrorGuestAgentStatusUnavailable", "attempts": 1000}
    bench.load(scenario)
    bench.add_rules(None, STILL_UNPROTECTED)
    rule = deployed_rule(bench, STILL_UNPROTECTED.name)
    start = bench.emulator.now()
    firing: list[tuple[timedelta, bool]] = []  # (time since start, whether db-02's alert is active)

    def sweep_ship_wait() -> None:
        bench.sweep_and_record()
        bench.ship()
        bench.emulator.advance(SWEEP_EVERY.total_seconds())
        assert rule.last_error is None, rule.last_error
        firing.append((bench.emulator.now() - start, (DB_02,) in rule.active))

    while bench.emulator.now() - start < timedelta(days=3):
        sweep_ship_wait()
    with bench.emulator.lock:
        bench.emulator.estate.failure_plans.pop(DB_02)  # the owner fixed the agent
    bench.backup_now(DB_02)
    recovery_point_at = bench.emulator.now() + timedelta(seconds=bench.emulator.estate.timings.backup_job_s)
    for _ in range(2):
        sweep_ship_wait()

    assert bench.protected_item(DB_02)["properties"]["protectionState"] == "Protected"
    assert rule.last_evaluated_at is not None and bench.emulator.now() - rule.last_evaluated_at < timedelta(
        hours=1
    )
    [fired] = bench.notifications(STILL_UNPROTECTED.name, vm="db-02")
    [resolved] = bench.notifications(STILL_UNPROTECTED.name, condition="Resolved", vm="db-02")
    fired_at = _time(fired["data"]["essentials"]["firedDateTime"]) - start
    resolved_at = _time(resolved["data"]["essentials"]["resolvedDateTime"]) - start
    assert timedelta(hours=19) <= fired_at <= timedelta(hours=26), "24 hours after the deadline's start"
    shipped_and_evaluated = SWEEP_EVERY + INGESTION_DELAY + STILL_UNPROTECTED.frequency  # at the latest
    assert recovery_point_at - start < resolved_at <= recovery_point_at - start + shipped_and_evaluated
    assert resolved_at - fired_at > timedelta(days=2), "still firing on the third day"
    assert dimensions(fired) == {"VmId": DB_02}
    assert all(active for at, active in firing if fired_at <= at < resolved_at)
    assert not any(active for at, active in firing if at >= resolved_at)
