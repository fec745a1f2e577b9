"""The automation's own health: each run of a flow records completed, partial or failed, and the deployed
rules (backupwarden/domain/alert_rules.py, kql/alert_flow_*.kql, kql/alert_automation_problems.kql) alert
on a failed run, a silent flow and a decision a person must act on, with the VM, the reason and the
recommendation in the dimensions.

The emulator over HTTPS and Azurite, the real SDK clients; the flows run as their triggers run them (the
records into the outbox, shipped by the outcomes run), and the emulator's evaluator runs the rules with
their deployed window and frequency on a clock that moves only when the test moves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backupwarden.app import build_sweep_fanout
from backupwarden.domain.alert_rules import AUTOMATION_PROBLEMS, FLOW_FAILED, FLOW_SILENT
from backupwarden.domain.alerts import read_alert
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.new_vm.worker import enqueued_record
from backupwarden.flows.outcomes.shipping import ShippingReport
from backupwarden.flows.remediation.worker import remediation_run_record
from backupwarden.flows.sweep.fanout import FanoutResult
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, dimensions, remediation_scenario

RESOURCE_GRAPH = r"/providers/Microsoft\.ResourceGraph/resources"
PAY_01 = vm_id_of(PROD, "rg-pay", "pay-01").lower()


@pytest.fixture
def bench(
    emulator: Emulator, emulator_server: EmulatorServer, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RemediationBench]:
    """api-03 of the demo estate on a still clock, the workspace provisioned."""
    bench = RemediationBench(emulator, emulator_server, azurite)
    bench.load(remediation_scenario("api-03"))
    bench.use_env(monkeypatch)
    yield bench
    bench.close()


def sweep_as_the_timer_runs_it(bench: RemediationBench) -> FanoutResult:
    """`sweep`: plan (and handle) the run, then record its decisions and its run record."""
    settings = bench.settings()
    planned = build_sweep_fanout(settings, bench.clients(settings), now=bench.emulator.now).run()
    bench.record([*planned.report.outcomes, planned.run_record()], source="Timer")
    return planned


def ship_as_the_timer_runs_it(bench: RemediationBench) -> ShippingReport:
    """`ship_outcomes`: ship, then record the run's own record (shipped by the next run)."""
    report = bench.ship()
    bench.record([report.run_record()], source="Timer")
    return report


def fired(bench: RemediationBench, rule: str) -> list[dict[str, str]]:
    return [dimensions(payload) for payload in bench.notifications(rule)]


def run_records(bench: RemediationBench, action: str) -> list[dict[str, Any]]:
    return [row for row in bench.landed(AUTOMATION_ACTIONS.table) if row["Action"] == action]


# --- run records ---------------------------------------------------------------------------------
def test_a_sweep_whose_discovery_fails_records_a_failed_run_and_alerts_once(bench: RemediationBench) -> None:
    bench.emulator.faults.add(Fault(path_regex=RESOURCE_GRAPH, status=503, method="POST"))

    planned = sweep_as_the_timer_runs_it(bench)
    ship_as_the_timer_runs_it(bench)

    [run] = run_records(bench, "sweep_run")
    assert run["Result"] == "failed"
    assert run["Reason"].startswith("discovery failed at ")
    assert run["RunId"] == planned.report.run_id
    bench.add_rules(None, FLOW_FAILED)
    bench.evaluate()
    cause = run["Reason"].split("; ")[0]
    assert fired(bench, FLOW_FAILED.name) == [{"Flow": "sweep", "Cause": cause}]

    bench.emulator.advance(FLOW_FAILED.frequency.total_seconds())
    bench.evaluate()
    assert len(bench.notifications(FLOW_FAILED.name)) == 1, "one failed run, one notification"


def test_a_healthy_sweep_and_shipping_run_record_completed_and_nothing_alerts(
    bench: RemediationBench,
) -> None:
    sweep_as_the_timer_runs_it(bench)
    ship_as_the_timer_runs_it(bench)
    bench.emulator.advance(300)
    ship_as_the_timer_runs_it(bench)  # ships the first shipping run's record

    assert [r["Result"] for r in run_records(bench, "sweep_run")] == ["completed"]
    assert [r["Result"] for r in run_records(bench, "ship_outcomes_run")] == ["completed"]
    bench.add_rules(None, FLOW_FAILED, FLOW_SILENT, AUTOMATION_PROBLEMS)
    bench.evaluate()
    bench.emulator.advance(FLOW_SILENT.frequency.total_seconds())
    bench.evaluate()
    assert bench.notifications() == []


def test_a_sweep_run_with_a_failed_vm_is_partial_and_no_flow_failure(bench: RemediationBench) -> None:
    bench.emulator.faults.add(Fault(path_regex=r"/protectedItems/[^/]+$", status=503, method="GET"))

    sweep_as_the_timer_runs_it(bench)
    ship_as_the_timer_runs_it(bench)

    [run] = run_records(bench, "sweep_run")
    assert run["Result"] == "partial"
    assert run["Reason"].startswith("1 of 1 decisions failed; 1 candidates: ")
    bench.add_rules(None, FLOW_FAILED)
    bench.evaluate()
    assert fired(bench, FLOW_FAILED.name) == []


def test_an_upload_outage_is_a_failed_shipping_run() -> None:
    from backupwarden.flows.outcomes.shipper import ShipResult

    stopped = ShipResult("Custom-BackupJobOutcomes", stopped="Logs Ingestion answered 503")
    report = ShippingReport(3, 3, (stopped, ShipResult("Custom-BackupAutomationActions")), None, "run-1")

    record = report.run_record()

    assert (record.action, record.result) == ("ship_outcomes_run", Result.FAILED)
    assert record.reason.startswith(
        "upload to Custom-BackupJobOutcomes stopped: Logs Ingestion answered 503; 3 finished jobs found"
    )


# --- a silent flow -------------------------------------------------------------------------------
def test_new_vms_enqueued_without_an_outcome_alert_until_the_worker_handles_them(
    bench: RemediationBench,
) -> None:
    vm = bench.create_vm("web-40")
    item = bench.work_item(vm)
    bench.record([enqueued_record(item)], source="EventGrid")  # as `vm_written` does; no worker runs
    ship_as_the_timer_runs_it(bench)
    bench.add_rules(None, FLOW_SILENT)

    bench.evaluate()
    assert "new VMs" not in [d["Flow"] for d in fired(bench, FLOW_SILENT.name)], "within its grace"

    bench.emulator.advance(FLOW_SILENT.frequency.total_seconds() * 2 + 60)
    bench.evaluate()
    assert [d for d in fired(bench, FLOW_SILENT.name) if d["Flow"] == "new VMs"] == [{"Flow": "new VMs"}]

    outcome = bench.worker().handle(item)  # the worker takes the queue again
    bench.record([outcome], source="Queue")
    ship_as_the_timer_runs_it(bench)
    bench.evaluate()
    resolved = [dimensions(p) for p in bench.notifications(FLOW_SILENT.name, condition="Resolved")]
    assert {"Flow": "new VMs"} in resolved


def test_a_new_vm_handled_promptly_is_not_a_silent_flow(bench: RemediationBench) -> None:
    vm = bench.create_vm("web-41")
    item = bench.work_item(vm)
    bench.record([enqueued_record(item)], source="EventGrid")
    bench.record([bench.worker().handle(item)], source="Queue")
    ship_as_the_timer_runs_it(bench)
    bench.emulator.advance(3600)
    bench.add_rules(None, FLOW_SILENT)
    bench.evaluate()
    assert "new VMs" not in [d["Flow"] for d in fired(bench, FLOW_SILENT.name)]


def test_outcome_shipping_without_a_run_record_for_30_minutes_alerts(bench: RemediationBench) -> None:
    ship_as_the_timer_runs_it(bench)
    ship_as_the_timer_runs_it(bench)  # ships the first run's record
    bench.add_rules(None, FLOW_SILENT)
    bench.evaluate()
    assert fired(bench, FLOW_SILENT.name) == []

    bench.emulator.advance(FLOW_SILENT.frequency.total_seconds() * 2 + 60)  # no run since
    bench.evaluate()
    assert fired(bench, FLOW_SILENT.name) == [{"Flow": "outcome shipping"}]


# --- decisions a person must act on --------------------------------------------------------------
def test_a_no_vault_record_alerts_once_with_the_vm_reason_and_recommendation(bench: RemediationBench) -> None:
    vm = bench.create_vm("web-42", location="swedencentral")
    outcome = bench.worker().handle(bench.work_item(vm))
    assert outcome.result is Result.NO_VAULT
    bench.record([outcome], source="Queue")
    ship_as_the_timer_runs_it(bench)
    bench.add_rules(None, AUTOMATION_PROBLEMS)

    bench.evaluate()
    [alert] = fired(bench, AUTOMATION_PROBLEMS.name)
    assert (alert["VmId"], alert["Result"], alert["Reason"]) == (vm, "no_vault", outcome.reason)
    assert alert["Recommendation"].startswith("Create a Recovery Services vault in the VM's subscription")

    for _ in range(4):  # the later evaluations of the same record
        bench.emulator.advance(AUTOMATION_PROBLEMS.frequency.total_seconds())
        bench.evaluate()
    assert len(bench.notifications(AUTOMATION_PROBLEMS.name)) == 1


def test_an_escalated_remediation_alerts_with_the_vm_reason_and_recommendation(
    bench: RemediationBench,
) -> None:
    bench.load(remediation_scenario("pay-01"))
    payload = bench.failure_alert(PAY_01)
    run_id = "remediation-run-1"
    outcomes = bench.remediation().handle(read_alert(payload), run_id)
    [escalated] = [o for o in outcomes if o.result is Result.ESCALATED]
    bench.record([*outcomes, remediation_run_record(run_id, "alert-1", outcomes)], source="Alert")
    ship_as_the_timer_runs_it(bench)
    bench.add_rules(None, AUTOMATION_PROBLEMS, FLOW_FAILED)

    bench.evaluate()

    [alert] = fired(bench, AUTOMATION_PROBLEMS.name)
    assert (alert["VmId"], alert["Result"], alert["Reason"]) == (PAY_01, "escalated", escalated.reason)
    assert alert["Recommendation"].startswith("Automation stopped retrying")
    assert [r["Result"] for r in run_records(bench, "remediation_run")] == ["completed"]
    assert fired(bench, FLOW_FAILED.name) == []


def test_an_escalation_of_an_alert_of_these_rules_does_not_alert_again(bench: RemediationBench) -> None:
    """Remediation escalates every alert of a rule that does not remediate: were that escalation a
    problem, each problems alert would raise the next."""
    problem = Outcome("r-1", "", "", "remediate", Result.ESCALATED, f"{AUTOMATION_PROBLEMS.name}: x")
    bench.record([problem], source="Alert")
    ship_as_the_timer_runs_it(bench)
    bench.add_rules(None, AUTOMATION_PROBLEMS)
    bench.evaluate()
    assert fired(bench, AUTOMATION_PROBLEMS.name) == []


def test_a_late_record_alerts_once(emulator: Emulator, bench: RemediationBench) -> None:
    """Recorded, then shipped 40 minutes later and queryable 3 minutes after upload: still one alert."""
    vm = bench.create_vm("web-43", location="swedencentral")
    outcome = bench.worker().handle(bench.work_item(vm))
    bench.record([outcome], source="Queue")
    bench.add_rules(None, AUTOMATION_PROBLEMS)
    bench.emulator.advance(40 * 60)  # evaluations tick meanwhile: nothing shipped yet
    assert fired(bench, AUTOMATION_PROBLEMS.name) == []
    bench.monitor.settings.ingestion_delay_s = 180
    ship_as_the_timer_runs_it(bench)

    for _ in range(6):
        bench.emulator.advance(AUTOMATION_PROBLEMS.frequency.total_seconds())
        bench.monitor.wait_for_deliveries(timeout_s=30)
    assert [d["VmId"] for d in fired(bench, AUTOMATION_PROBLEMS.name)] == [vm]


def test_shipping_with_resource_graph_down_ships_the_outbox_and_records_a_failed_run(
    bench: RemediationBench,
) -> None:
    waiting = Outcome("r-2", "", "", "trigger_backup", Result.SKIPPED, "waiting in the outbox")
    bench.record([waiting], source="Timer")
    bench.emulator.faults.add(Fault(path_regex=RESOURCE_GRAPH, status=503, method="POST"))

    report = ship_as_the_timer_runs_it(bench)

    assert [r["Reason"] for r in bench.landed(AUTOMATION_ACTIONS.table)] == ["waiting in the outbox"]
    record = report.run_record()
    assert record.result is Result.FAILED
    assert record.reason.startswith("collecting finished jobs failed at resource graph query; ")
    assert report.watermark is None
