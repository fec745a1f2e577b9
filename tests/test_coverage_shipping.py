"""Coverage in Log Analytics: a coverage run's BackupCoverage_CL rows go to the outbox (Azurite), the
outcomes run ships them to the emulator's Logs Ingestion API, and they are read back with the Log
Analytics query API: the trend, and the two coverage alert rules (their KQL, and evaluated by the
emulator's alert engine as deployed). Real SDK clients throughout; the estate is
emulator/scenarios/coverage.yaml, hand-counted in tests/test_coverage_records.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.app import build_coverage, build_coverage_recorder, build_outcome_shipping, report_query
from backupwarden.cli.main import main
from backupwarden.domain.alert_rules import COVERAGE_BELOW_TARGET, VM_PAST_DEADLINE, AlertRuleDefinition
from backupwarden.domain.coverage import CoveragePoint, coverage
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_schema import COVERAGE
from backupwarden.flows.coverage import CoverageScan, ScopeFailure
from backupwarden.flows.coverage_shipping import coverage_trend
from backupwarden.flows.outcomes.shipping import ShippingReport
from backupwarden.settings import Settings
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_alert_rules, provision_log_analytics
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.monitor.models import MonitorBackend
from emulator.scenario import load_scenario_file
from tests.test_coverage_records import COVERED, DEV, IN_SCOPE_DEV, IN_SCOPE_PROD, PROD
from tests.test_infra import WORKBOOK, BicepEvaluator, bicep_string

ROWS_PER_RUN = 1 + 2 + 2 + 12  # the total, 2 subscriptions, 2 regions, 12 VMs in scope
NOT_YET_DUE = {"cov-new", "cov-pending"}  # no recovery point, but inside their own deadlines
PAST_DEADLINE = (IN_SCOPE_PROD | IN_SCOPE_DEV) - COVERED - NOT_YET_DUE


@dataclass
class CoverageBench:
    emulator: Emulator
    server: EmulatorServer
    storage: str
    outbox_table: str
    ledger_table: str

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "AzureWebJobsStorage": self.storage,
            "BACKUPWARDEN_SUBSCRIPTIONS": f"{PROD},{DEV}",
            "BACKUPWARDEN_ARM_ENDPOINT": self.server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "x",
            "BACKUPWARDEN_CA_BUNDLE": self.server.ca_bundle,
            "BACKUPWARDEN_HTTP_RETRY_TOTAL": "0",
            "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": self.server.endpoint,
            "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": self.server.endpoint,
            "BACKUPWARDEN_DCR_IMMUTABLE_ID": DEMO_DCR_ID,
            "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID": DEMO_WORKSPACE_ID,
            "BACKUPWARDEN_OUTBOX_TABLE": self.outbox_table,
            "BACKUPWARDEN_LEDGER_TABLE": self.ledger_table,
            **overrides,
        }

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env(**overrides))

    def scan(self) -> CoverageScan:
        settings = self.settings()
        with AzureClients(settings) as clients:
            return build_coverage(settings, clients, now=self.emulator.now).run()

    def record(self, scan: CoverageScan, run_id: str, **overrides: str) -> int:
        settings = self.settings(**overrides)
        with AzureClients(settings) as clients:
            recorder = build_coverage_recorder(settings, clients, now=self.emulator.now)
            return recorder.record(scan, run_id=run_id, dry_run=False)

    def ship(self) -> ShippingReport:
        settings = self.settings()
        with AzureClients(settings) as clients:
            return build_outcome_shipping(settings, clients, now=self.emulator.now).run()

    def trend(self, window: timedelta) -> list[CoveragePoint]:
        settings = self.settings()
        with AzureClients(settings) as clients:
            return coverage_trend(report_query(settings, clients), window)

    def query(self, kql_name: str, window: timedelta) -> list[dict[str, Any]]:
        settings = self.settings()
        with AzureClients(settings) as clients:
            return report_query(settings, clients).rows(load_kql(kql_name), window)

    def pending(self) -> list[dict[str, Any]]:
        settings = self.settings()
        with AzureClients(settings) as clients:
            return [record.row for record in Outbox(clients.outbox_table()).pending(COVERAGE.stream)]

    def landed(self) -> list[dict[str, Any]]:
        return self.emulator.backend(MonitorBackend).rows(DEMO_WORKSPACE_ID, COVERAGE.table)

    def fired(self, rule: AlertRuleDefinition) -> list[list[str]]:
        """The rule as alerts.bicep deploys it, evaluated now by the emulator: each alert's dimensions."""
        monitor = self.emulator.backend(MonitorBackend)
        unique = replace(rule, name=f"{rule.name}-{uuid.uuid4().hex[:6]}")  # a rule of its own per call
        provision_alert_rules(self.emulator, None, DEMO_WORKSPACE_ID, [unique])
        payloads = [
            p for p in monitor.evaluate_alerts() if p["data"]["essentials"]["monitorCondition"] == "Fired"
        ]
        return [
            [d["value"] for d in p["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]]
            for p in payloads
        ]


@pytest.fixture
def bench(emulator: Emulator, emulator_server: EmulatorServer, azurite: str) -> Iterator[CoverageBench]:
    """coverage.yaml on a frozen clock, the workspace and DCR of monitoring.bicep, own storage tables."""
    scenario = load_scenario_file("coverage")
    scenario["clock"]["scale"] = 0
    emulator.load_scenario(scenario)
    provision_log_analytics(emulator)
    suffix = uuid.uuid4().hex[:12]
    bench = CoverageBench(emulator, emulator_server, azurite, f"outbox{suffix}", f"ledger{suffix}")
    yield bench
    emulator.faults.clear()
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)
    with TableServiceClient.from_connection_string(azurite) as service:
        for table in (bench.outbox_table, bench.ledger_table):
            with contextlib.suppress(ResourceNotFoundError):
                service.delete_table(table)


def names(rows: list[dict[str, Any]]) -> set[str]:
    return {row["VmName"] for row in rows}


# --- written, shipped, read back -------------------------------------------------------------------
def test_a_runs_rows_are_shipped_and_read_back_as_the_trend(bench: CoverageBench) -> None:
    scan = bench.scan()

    assert bench.record(scan, "run-1") == ROWS_PER_RUN
    shipped = bench.ship()

    coverage_result = next(r for r in shipped.results if r.stream == COVERAGE.stream)
    assert (coverage_result.shipped, coverage_result.complete) == (ROWS_PER_RUN, True)
    assert bench.pending() == []
    landed = bench.landed()
    assert len(landed) == len({r["RecordId"] for r in landed}) == ROWS_PER_RUN
    assert {r["RunId"] for r in landed} == {"run-1"}
    assert bench.trend(timedelta(days=1)) == [CoveragePoint(at=scan.at, in_scope=12, covered=1)]
    assert bench.trend(timedelta(days=1))[0].percent == pytest.approx(100 / 12)


def test_the_trend_has_a_point_per_run_oldest_first(bench: CoverageBench) -> None:
    first = bench.scan()
    bench.record(first, "run-1")
    bench.emulator.advance(3600)
    covered_only = [c for c in first.classifications if c.vm.name in COVERED]
    later = CoverageScan(bench.emulator.now(), tuple(covered_only), coverage(covered_only), (), 0)
    bench.record(later, "run-2")
    bench.ship()

    assert bench.trend(timedelta(days=1)) == [
        CoveragePoint(at=first.at, in_scope=12, covered=1),
        CoveragePoint(at=later.at, in_scope=1, covered=1),
    ]
    assert bench.trend(timedelta(minutes=30)) == [CoveragePoint(at=later.at, in_scope=1, covered=1)]


def test_a_failed_upload_loses_nothing_and_ships_on_the_next_run(bench: CoverageBench) -> None:
    bench.record(bench.scan(), "run-1")
    bench.emulator.faults.add(
        Fault(r"^/dataCollectionRules/.*/streams/Custom-BackupCoverage", 503, remaining=1)
    )

    failed = bench.ship()

    stopped = next(r for r in failed.results if r.stream == COVERAGE.stream)
    assert (stopped.shipped, stopped.stopped is not None) == (0, True)
    assert bench.landed() == []
    assert len(bench.pending()) == ROWS_PER_RUN

    again = bench.ship()

    assert next(r for r in again.results if r.stream == COVERAGE.stream).shipped == ROWS_PER_RUN
    landed = bench.landed()
    assert len(landed) == len({r["RecordId"] for r in landed}) == ROWS_PER_RUN
    assert bench.pending() == []


def test_a_scan_that_missed_part_of_the_scope_writes_no_figures(bench: CoverageBench) -> None:
    scan = bench.scan()
    partial = CoverageScan(scan.at, scan.classifications, scan.report, (ScopeFailure(DEV, "throttled"),), 1)

    assert bench.record(partial, "run-1") == 0
    assert bench.pending() == []


# --- the alert rules ---------------------------------------------------------------------------------
def test_coverage_below_the_target_alerts_and_at_or_above_it_does_not(bench: CoverageBench) -> None:
    scan = bench.scan()  # 1 of 12 covered: 8.3 %
    bench.record(scan, "run-1")  # the default target, 95 %
    bench.ship()

    [row] = bench.query(COVERAGE_BELOW_TARGET.kql_name, COVERAGE_BELOW_TARGET.window)
    assert (row["RunId"], row["InScope"], row["Covered"], row["Target"]) == ("run-1", 12, 1, 95.0)
    assert bench.fired(COVERAGE_BELOW_TARGET) == [[]]  # one alert, no dimension

    bench.emulator.advance(3600)  # the next run is held to a target of 8 %, which 8.3 % meets
    bench.record(bench.scan(), "run-2", BACKUPWARDEN_COVERAGE_TARGET="8")
    bench.ship()

    assert bench.query(COVERAGE_BELOW_TARGET.kql_name, COVERAGE_BELOW_TARGET.window) == []
    assert bench.fired(COVERAGE_BELOW_TARGET) == []


def test_a_vm_past_its_deadline_alerts_until_the_latest_run_finds_it_covered(bench: CoverageBench) -> None:
    scan = bench.scan()
    bench.record(scan, "run-1")
    bench.ship()

    rows = bench.query(VM_PAST_DEADLINE.kql_name, VM_PAST_DEADLINE.window)
    assert names(rows) == PAST_DEADLINE and len(rows) == len(PAST_DEADLINE)
    stale = next(r for r in rows if r["VmName"] == "cov-stale")
    assert (stale["State"], stale["HoursWithoutRecoveryPoint"]) == ("stale", 72.0)
    ids = {c.vm.name: c.vm.id for c in scan.classifications}
    assert sorted(bench.fired(VM_PAST_DEADLINE)) == sorted([ids[name]] for name in PAST_DEADLINE)

    # a later run in which every VM in scope is covered or not yet due: nothing past its deadline
    bench.emulator.advance(3600)
    kept = [c for c in scan.classifications if c.vm.name in COVERED | NOT_YET_DUE]
    bench.record(CoverageScan(bench.emulator.now(), tuple(kept), coverage(kept), (), 0), "run-2")
    bench.ship()

    assert bench.query(VM_PAST_DEADLINE.kql_name, VM_PAST_DEADLINE.window) == []


# --- the CLI ----------------------------------------------------------------------------------------
def test_coverage_act_writes_the_runs_rows(
    bench: CoverageBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in bench.env().items():
        monkeypatch.setenv(name, value)

    assert main(["coverage", "--act", "--dry-run", "--output", "json"]) == 0

    printed = json.loads(capsys.readouterr().out)
    total = printed["coverage"]["totals"]["total"]
    rows = bench.pending()
    [total_row] = [r for r in rows if r["Kind"] == "total"]
    assert (total_row["InScope"], total_row["Covered"]) == (total["in_scope"], total["covered"])
    assert len([r for r in rows if r["Kind"] == "vm"]) == total["in_scope"]
    assert {(r["RunId"], r["DryRun"]) for r in rows} == {(printed["actions"]["run_id"], True)}


# --- the workbook's Coverage tab --------------------------------------------------------------------
def workbook_coverage_query(name: str, subscription: str = "*", vault: str = "*") -> str:
    """A Coverage tab query as the workbook runs it: its parameters replaced by the pickers' values."""
    queries = {
        q["name"]: bicep_string(q["query"]) for q in BicepEvaluator(WORKBOOK, {}).variable("coverageQueries")
    }
    return queries[name].replace("{Subscription}", subscription).replace("{Vault}", vault)


def test_the_workbook_tab_shows_the_trend_and_the_worst_offenders_per_subscription_and_vault(
    bench: CoverageBench,
) -> None:
    scan = bench.scan()
    bench.record(scan, "run-1")
    bench.ship()
    settings = bench.settings()
    dev_vault = next(c.vault_id for c in scan.classifications if c.vm.name == "cov-stale")

    def run(name: str, **pickers: str) -> list[dict[str, Any]]:
        with AzureClients(settings) as clients:
            query = workbook_coverage_query(name, **pickers)
            return report_query(settings, clients).rows(query, timedelta(days=1))

    [everything] = run("coverage-trend")
    assert (everything["TimeGenerated"], everything["CoveragePercent"], everything["Target"]) == (
        scan.at,
        pytest.approx(100 / 12, abs=0.01),
        95.0,
    )
    assert [p.percent for p in bench.trend(timedelta(days=1))] == [
        pytest.approx(everything["CoveragePercent"], abs=0.01)
    ]
    assert [r["CoveragePercent"] for r in run("coverage-trend", subscription=DEV)] == [0.0]
    assert [r["CoveragePercent"] for r in run("coverage-trend", subscription=PROD)] == [
        pytest.approx(100 / 9, abs=0.01)
    ]

    worst = run("coverage-worst-offenders")
    assert names(worst) == (IN_SCOPE_PROD | IN_SCOPE_DEV) - COVERED
    known = [r["HoursWithoutRecoveryPoint"] for r in worst if r["HoursWithoutRecoveryPoint"] is not None]
    assert known == sorted(known, reverse=True) and worst[-1]["HoursWithoutRecoveryPoint"] is not None
    in_dev_vault = run(
        "coverage-worst-offenders", vault=dev_vault.upper()
    )  # the picker's case is not the row's
    assert names(in_dev_vault) == {"cov-stale", "cov-soft-deleted"}
    assert names(run("coverage-worst-offenders", subscription=DEV, vault=dev_vault)) == {
        "cov-stale",
        "cov-soft-deleted",
    }


def test_the_html_page_charts_the_shipped_runs_then_this_scan(
    bench: CoverageBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for run_id in ("run-1", "run-2"):
        bench.record(bench.scan(), run_id)
        bench.emulator.advance(3600)
    bench.ship()
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in bench.env().items():
        monkeypatch.setenv(name, value)

    assert main(["coverage", "--output", "html"]) == 0

    page = capsys.readouterr().out
    assert len(re.findall(r'<circle class="point"', page)) == 3  # two shipped runs, then this scan

    monkeypatch.delenv("BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID")
    assert main(["coverage", "--output", "html"]) == 0
    captured = capsys.readouterr()
    assert len(re.findall(r'<circle class="point"', captured.out)) == 1
    assert "the chart shows this scan only" in captured.err
