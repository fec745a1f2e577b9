"""`report` and the shipped KQL, against the emulator's Log Analytics workspace (real KQL) and Azurite.

The estate below is seeded with known jobs on a frozen clock; outcomes go out through the real
shipping path (Resource Graph, outbox, Logs Ingestion) and come back through LogsQueryClient.
Every expected figure is written out by hand from the estate, never computed by the code under test.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.logs_ingestion import row_json
from backupwarden.adapters.azure.logs_query import LogsQuery
from backupwarden.app import build_outcome_shipping, report_query
from backupwarden.cli.main import main
from backupwarden.domain.kql import KQL_DIR, kql_names, load_kql
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES, LogTable
from backupwarden.flows.outcomes.report import (
    FailureGroup,
    FirstRecoveryPoint,
    OutcomeReport,
    VmWithoutRecoveryPoint,
    build_outcome_report,
    render_report_table,
)
from backupwarden.settings import Settings
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_log_analytics
from emulator.monitor.models import MonitorBackend
from tests.sweep_fixtures import SweepBench

ROOT = Path(__file__).resolve().parents[1]
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the scenario's clock start
NOW = T + timedelta(minutes=30)  # after the running backups (30 min, started T-5m) ended at T+25m
AGENT_ADVICE = "Ensure the VM agent is installed, up to date and running, then retry the operation."
SUB = "33333333-3333-4333-8333-333333333333"
VAULT_ID = (
    f"/subscriptions/{SUB}/resourcegroups/rg-backup/providers/microsoft.recoveryservices/vaults/rsv-weu"
)

# Jobs (end times; T = clock start) and what a 24h report at NOW = T+30m sees ([T-23h30m, T+30m]):
#   ok-01        ConfigureBackup Completed T-10d (out)    Backup Completed T-9h
#   ok-02        ConfigureBackup Completed T-10d (out)    Backup Completed T-24h10m (shipped, out of 24h)
#   flaky-01     ConfigureBackup Completed T-10d (out)    Backup Completed T-20h, Backup Failed T-2h (agent)
#   old-01       ConfigureBackup Completed T-2d (out)     Backup Failed T-4h (agent)
#   new-01       ConfigureBackup Completed T-3h           Backup Completed T+25m
#   new-02       ConfigureBackup Completed T-5h           Backup Failed T+25m (UserErrorVmNotFoundV2)
#   new-03       ConfigureBackup Completed T-30m          (no backup)
#   recovered-01 ConfigureBackup Completed T-8h           Backup Failed T-6h (BackUpOperationFailedV2),
#                                                         Backup Completed T+25m
#   bare-01      not protected, no jobs
# 24h: Completed = ok-01, flaky-01, new-01 x2, new-02 CB, new-03 CB, recovered-01 x2 = 8;
#      Failed = flaky-01, old-01, new-02, recovered-01 = 4.
SCENARIO: dict[str, Any] = {
    "clock": {"start": T.isoformat(), "scale": 0},
    "timings": {
        "refresh_containers_s": 10,
        "configure_operation_s": 35,
        "backup_job_s": 1800,
        "retry_after_s": 0,
    },
    "subscriptions": [
        {
            "id": SUB,
            "name": "report-estate",
            "vaults": [{"name": "rsv-weu", "resource_group": "rg-backup", "location": "westeurope"}],
            "vms": [
                {
                    "name": "ok-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "Protected",
                        "since": "-10d",
                        "last_backup": "-9h",
                    },
                },
                {
                    "name": "ok-02",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "Protected",
                        "since": "-10d",
                        "last_backup": "-1450m",
                    },
                },
                {
                    "name": "flaky-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "Protected",
                        "since": "-10d",
                        "last_backup": "-20h",
                        "last_backup_failed": {"code": "UserErrorGuestAgentStatusUnavailable", "at": "-2h"},
                    },
                },
                {
                    "name": "old-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-2d",
                        "last_backup_failed": {"code": "UserErrorGuestAgentStatusUnavailable", "at": "-4h"},
                    },
                },
                {
                    "name": "new-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-3h",
                        "running_backup": True,
                    },
                },
                {
                    "name": "new-02",
                    "location": "westeurope",
                    "fail_next": {"code": "UserErrorVmNotFoundV2", "attempts": 9},
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-5h",
                        "running_backup": True,
                    },
                },
                {
                    "name": "new-03",
                    "location": "westeurope",
                    "protection": {"vault": "rsv-weu", "state": "IRPending", "since": "-30m"},
                },
                {
                    "name": "recovered-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-8h",
                        "last_backup_failed": {"code": "BackUpOperationFailedV2", "at": "-6h"},
                        "running_backup": True,
                    },
                },
                {"name": "bare-01", "location": "westeurope"},
            ],
        }
    ],
}


def vm_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/{name}"


EXPECTED_24H = OutcomeReport(
    window=timedelta(hours=24),
    jobs_by_status={"Completed": 8, "Failed": 4},
    failures=(  # by jobs, most first, then by code
        FailureGroup("UserErrorGuestAgentStatusUnavailable", AGENT_ADVICE, 2, 2, ("flaky-01", "old-01")),
        FailureGroup(
            "BackUpOperationFailedV2", "Retry the operation after some time.", 1, 1, ("recovered-01",)
        ),
        FailureGroup("UserErrorVmNotFoundV2", "Stop protection of the deleted VM.", 1, 1, ("new-02",)),
    ),
    without_recovery_point=(  # no completed Backup in the window; the newest job says why
        VmWithoutRecoveryPoint(
            vm_id("new-02"),
            "new-02",
            VAULT_ID,
            "Backup",
            "Failed",
            "UserErrorVmNotFoundV2",
            T + timedelta(minutes=25),
        ),
        VmWithoutRecoveryPoint(
            vm_id("new-03"), "new-03", VAULT_ID, "ConfigureBackup", "Completed", "", T - timedelta(minutes=30)
        ),
        VmWithoutRecoveryPoint(
            vm_id("old-01"),
            "old-01",
            VAULT_ID,
            "Backup",
            "Failed",
            "UserErrorGuestAgentStatusUnavailable",
            T - timedelta(hours=4),
        ),
    ),
    first_recovery_points=(  # ConfigureBackup completed in the window
        FirstRecoveryPoint(
            vm_id("new-01"),
            "new-01",
            VAULT_ID,
            T - timedelta(hours=3),
            T + timedelta(minutes=25),
            3 * 3600 + 25 * 60,
        ),
        FirstRecoveryPoint(vm_id("new-02"), "new-02", VAULT_ID, T - timedelta(hours=5), None, None),
        FirstRecoveryPoint(vm_id("new-03"), "new-03", VAULT_ID, T - timedelta(minutes=30), None, None),
        FirstRecoveryPoint(
            vm_id("recovered-01"),
            "recovered-01",
            VAULT_ID,
            T - timedelta(hours=8),
            T + timedelta(minutes=25),
            8 * 3600 + 25 * 60,
        ),
    ),
)


# --- fixtures -------------------------------------------------------------------------------------
def monitor_env(bench: SweepBench, outbox_table: str) -> dict[str, str]:
    endpoint = bench.server.endpoint
    return bench.env(
        BACKUPWARDEN_LOGS_INGESTION_ENDPOINT=endpoint,
        BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT=endpoint,
        BACKUPWARDEN_DCR_IMMUTABLE_ID=DEMO_DCR_ID,
        BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID=DEMO_WORKSPACE_ID,
        BACKUPWARDEN_OUTBOX_TABLE=outbox_table,
        BACKUPWARDEN_SUBSCRIPTIONS=SUB,
    )


class ReportBench:
    def __init__(self, bench: SweepBench, outbox_table: str) -> None:
        self.bench = bench
        self.emulator = bench.emulator
        self.env = monitor_env(bench, outbox_table)
        self.settings = Settings.from_env(self.env)
        self.clients = bench.clients(self.settings)

    def ship(self) -> None:
        shipped = build_outcome_shipping(self.settings, self.clients, now=self.emulator.now).run()
        assert all(result.complete and not result.parked for result in shipped.results), shipped.to_json()

    def report(self, window: timedelta) -> OutcomeReport:
        return build_outcome_report(report_query(self.settings, self.clients), window)

    def query(self) -> LogsQuery:
        return report_query(self.settings, self.clients)

    def upload(self, stream: str, rows: list[dict[str, Any]]) -> None:
        self.clients.logs_ingestion().upload(
            rule_id=DEMO_DCR_ID, stream_name=stream, logs=[row_json(row) for row in rows]
        )

    def stored(self, table: str) -> list[dict[str, Any]]:
        return self.emulator.backend(MonitorBackend).rows(DEMO_WORKSPACE_ID, table)


@pytest.fixture
def report_bench(sweep_bench: SweepBench) -> Iterator[ReportBench]:
    """The estate above, its Log Analytics workspace and DCR, a fresh outbox table; nothing shipped yet."""
    sweep_bench.load(SCENARIO)
    provision_log_analytics(sweep_bench.emulator)
    outbox_table = f"outbox{uuid.uuid4().hex[:12]}"
    yield ReportBench(sweep_bench, outbox_table)
    with TableServiceClient.from_connection_string(sweep_bench.storage) as service:
        service.delete_table(outbox_table)


@pytest.fixture
def shipped(report_bench: ReportBench) -> ReportBench:
    """The running backups finished (clock at NOW) and every finished job shipped."""
    report_bench.emulator.advance(30 * 60)
    assert report_bench.emulator.now() == NOW
    report_bench.ship()
    return report_bench


# --- the report's figures ------------------------------------------------------------------------
def test_report_figures_match_the_hand_computed_expectation(shipped: ReportBench) -> None:
    assert shipped.report(timedelta(hours=24)) == EXPECTED_24H


def test_report_counts_a_record_uploaded_twice_once(shipped: ReportBench) -> None:
    """The at-least-once window: a batch resent after a crash between upload and bookkeeping."""
    stored = shipped.stored(JOB_OUTCOMES.table)
    resend = [{name: row[name] for name in JOB_OUTCOMES.column_names} for row in stored]
    shipped.upload(JOB_OUTCOMES.stream, resend)

    assert len(shipped.stored(JOB_OUTCOMES.table)) == 2 * len(stored)
    assert shipped.report(timedelta(hours=24)) == EXPECTED_24H


def test_report_window_is_the_query_timespan(shipped: ReportBench) -> None:
    # 2h = [T-1h30m, T+30m]: new-03's ConfigureBackup, the backups of new-01, recovered-01 (Completed)
    # and new-02 (Failed).
    assert shipped.report(timedelta(hours=2)).jobs_by_status == {"Completed": 3, "Failed": 1}
    # 48h adds ok-02's backup at T-24h10m; the jobs before the collector's first look-back were never shipped.
    assert shipped.report(timedelta(hours=48)).jobs_by_status == {"Completed": 9, "Failed": 4}


def test_report_table_names_each_section_and_vm(shipped: ReportBench) -> None:
    table = render_report_table(shipped.report(timedelta(hours=24)))

    assert "== finished jobs in the last 24h, by status ==" in table
    lines = [line.split() for line in table.splitlines()]
    assert ["Completed", "8"] in lines and ["Failed", "4"] in lines and ["total", "12"] in lines
    agent = next(line for line in lines if line and line[0] == "UserErrorGuestAgentStatusUnavailable")
    assert agent[1:5] == ["2", "2", "flaky-01,", "old-01"]
    assert " ".join(agent[5:]) == AGENT_ADVICE
    assert ["new-01", "2026-03-02", "09:00:00Z", "2026-03-02", "12:25:00Z", "3h", "25m"] in lines
    assert ["new-03", "2026-03-02", "11:30:00Z", "-", "-"] in lines


# --- the shipped KQL -------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [JOB_OUTCOMES.stream, AUTOMATION_ACTIONS.stream])
def test_dedupe_kql_returns_a_record_uploaded_twice_once(report_bench: ReportBench, stream: str) -> None:
    table = JOB_OUTCOMES if stream == JOB_OUTCOMES.stream else AUTOMATION_ACTIONS
    record = sample_row(table, "rec-1")
    other = sample_row(table, "rec-2")
    report_bench.upload(stream, [record, other])
    report_bench.upload(stream, [record])

    assert len(report_bench.stored(table.table)) == 3
    name = "dedupe_job_outcomes" if table is JOB_OUTCOMES else "dedupe_automation_actions"
    rows = report_bench.query().rows(load_kql(name), timedelta(hours=1))
    assert sorted(row["RecordId"] for row in rows) == ["rec-1", "rec-2"]


def test_every_report_query_reads_the_deduplicated_outcomes() -> None:
    dedupe = "BackupJobOutcomes_CL\n    | summarize arg_max(TimeGenerated, *) by RecordId;"
    assert (
        _body(load_kql("dedupe_job_outcomes"))
        == "BackupJobOutcomes_CL\n| summarize arg_max(TimeGenerated, *) by RecordId"
    )
    reports = [name for name in kql_names() if name.startswith("report_")]
    assert len(reports) == 5
    for name in reports:
        assert f"let JobOutcomes = {dedupe}" in load_kql(name), name


@pytest.mark.parametrize("name", kql_names())
def test_every_shipped_query_runs_on_the_emulator_workspace(report_bench: ReportBench, name: str) -> None:
    report_bench.upload(JOB_OUTCOMES.stream, [sample_row(JOB_OUTCOMES, "job-1")])
    report_bench.upload(AUTOMATION_ACTIONS.stream, [sample_row(AUTOMATION_ACTIONS, "act-1")])

    rows = report_bench.query().rows(load_kql(name), timedelta(hours=1), f"kql/{name}.kql")

    assert isinstance(rows, list)
    if name.startswith("dedupe_"):
        assert len(rows) == 1


def test_a_refused_query_is_an_azure_call_error_with_the_cause(report_bench: ReportBench) -> None:
    with pytest.raises(AzureCallError) as raised:
        report_bench.query().rows("BackupJobOutcomes_CL | where NoSuchColumn == 1", timedelta(hours=1))

    assert raised.value.status == 400
    assert "NoSuchColumn" in raised.value.message


def test_kql_files_ship_with_the_functions_app() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert KQL_DIR == ROOT / "kql"
    for path in ("kql/", "kql/report_failures.kql", "report_failures.kql"):
        assert not [pattern for pattern in ignored if fnmatch.fnmatch(path, pattern)], path


def test_load_kql_refuses_names_outside_the_folder() -> None:
    for name in ("../README", "missing", "report_failures.kql"):
        with pytest.raises(ValueError):
            load_kql(name)


# --- the command line -----------------------------------------------------------------------------
def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage", "SWEEP_SCHEDULE"))
    }
    return subprocess.run(
        [sys.executable, "-m", "backupwarden", *args],
        cwd=ROOT,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_report_json_is_one_object_with_every_section(shipped: ReportBench) -> None:
    done = run_cli("report", "--since", "24h", "--output", "json", env=shipped.env)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    printed = json.loads(lines[0])
    assert set(printed) == {
        "window_seconds",
        "jobs_total",
        "jobs_by_status",
        "failures",
        "vms_with_warnings",
        "vms_without_recovery_point",
        "time_to_first_recovery_point",
    }
    assert printed["window_seconds"] == 86400 and printed["jobs_total"] == 12
    assert printed["jobs_by_status"] == {"Completed": 8, "Failed": 4}
    assert printed["failures"][0] == {
        "error_code": "UserErrorGuestAgentStatusUnavailable",
        "recommendation": AGENT_ADVICE,
        "jobs": 2,
        "vms": 2,
        "vm_names": ["flaky-01", "old-01"],
    }
    assert [vm["vm_name"] for vm in printed["vms_without_recovery_point"]] == ["new-02", "new-03", "old-01"]
    assert printed["vms_without_recovery_point"][1] == {
        "vm_id": vm_id("new-03"),
        "vm_name": "new-03",
        "vault_id": VAULT_ID,
        "last_operation": "ConfigureBackup",
        "last_status": "Completed",
        "last_error_code": "",
        "last_end_time": "2026-03-02T11:30:00Z",
    }
    assert printed["time_to_first_recovery_point"][0] == {
        "vm_id": vm_id("new-01"),
        "vm_name": "new-01",
        "vault_id": VAULT_ID,
        "configured_at": "2026-03-02T09:00:00Z",
        "first_recovery_point_at": "2026-03-02T12:25:00Z",
        "seconds": 12300,
    }


def test_cli_report_without_workspace_id_exits_2_naming_the_setting(
    report_bench: ReportBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in report_bench.env.items():
        if name != "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID":
            monkeypatch.setenv(name, value)

    assert main(["report"]) == 2

    printed = capsys.readouterr()
    assert printed.err.startswith("error: BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: missing"), printed.err
    assert printed.out == ""
    assert report_bench.bench.requests() == [], "nothing was called without a workspace"


@pytest.mark.parametrize("since", ["0", "soon", "1x", "-1h"])
def test_cli_report_refuses_a_window_that_is_not_a_duration(
    since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", f"--since={since}"])

    assert exited.value.code == 2
    assert "--since" in capsys.readouterr().err


# --- helpers ----------------------------------------------------------------------------------------
def sample_row(table: LogTable, record_id: str) -> dict[str, Any]:
    """A row with every column set: strings named after their column, times a minute before the clock."""
    samples = {"datetime": T - timedelta(minutes=1), "real": 1.5, "int": 1, "boolean": False}
    row = {column.name: samples.get(column.type, column.name) for column in table.columns}
    row["RecordId"] = record_id
    if table is JOB_OUTCOMES:
        row["Status"] = "Failed"
    return row


def _body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("//"))
