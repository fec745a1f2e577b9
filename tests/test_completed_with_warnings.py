"""`CompletedWithWarnings` is a status of its own: in the shipped record, the report and the workbook.

The emulator finishes every backup without a failure plan as `timings.job_outcome` says; here that is
`CompletedWithWarnings`, while the seeded history and ConfigureBackup jobs are `Completed` and one VM's
backup fails. Outcomes go out through the real shipping path and come back through LogsQueryClient.
A backup that completed with warnings made a recovery point (azure-facts §1, §3): the reports that ask
"has it a recovery point?" count it as one, and the warnings views show it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.monitor.query import LogsQueryClient, LogsQueryResult

from backupwarden.app import build_outcome_shipping, report_query
from backupwarden.cli.main import main
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.flows.outcomes.report import (
    FirstRecoveryPoint,
    OutcomeReport,
    VmWithWarnings,
    build_outcome_report,
    render_report_table,
)
from backupwarden.settings import Settings
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_log_analytics
from emulator.monitor.models import MonitorBackend
from tests.conftest import StaticToken
from tests.sweep_fixtures import SweepBench
from tests.test_infra import WORKBOOK, BicepEvaluator, bicep_string

T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOW = T + timedelta(minutes=30)  # the running backups (30 min, started T-5m) ended at T+25m
SUB = "44444444-4444-4444-8444-444444444444"

# warn-01  ConfigureBackup Completed T-2h, Backup CompletedWithWarnings T+25m (the estate's job outcome)
# ok-01    Backup Completed T-9h (seeded history); its ConfigureBackup at T-10d was never shipped
# fail-01  ConfigureBackup Completed T-3h, Backup Failed T+25m
SCENARIO: dict[str, Any] = {
    "clock": {"start": T.isoformat(), "scale": 0},
    "timings": {"backup_job_s": 1800, "retry_after_s": 0, "job_outcome": "CompletedWithWarnings"},
    "subscriptions": [
        {
            "id": SUB,
            "name": "warnings-estate",
            "vaults": [{"name": "rsv-weu", "resource_group": "rg-backup", "location": "westeurope"}],
            "vms": [
                {
                    "name": "warn-01",
                    "location": "westeurope",
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-2h",
                        "running_backup": True,
                    },
                },
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
                    "name": "fail-01",
                    "location": "westeurope",
                    "fail_next": {"code": "UserErrorGuestAgentStatusUnavailable"},
                    "protection": {
                        "vault": "rsv-weu",
                        "state": "IRPending",
                        "since": "-3h",
                        "running_backup": True,
                    },
                },
            ],
        }
    ],
}
VAULT_ID = (
    f"/subscriptions/{SUB}/resourcegroups/rg-backup/providers/microsoft.recoveryservices/vaults/rsv-weu"
)
STATUSES_24H = {"Completed": 3, "CompletedWithWarnings": 1, "Failed": 1}


def vm_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/{name}"


WARN_01 = VmWithWarnings(
    vm_id("warn-01"), "warn-01", VAULT_ID, 1, "Backup", NOW - timedelta(minutes=5), "", ""
)


class Shipped:
    def __init__(self, bench: SweepBench, outbox_table: str) -> None:
        self.emulator = bench.emulator
        self.endpoint, self.ca_bundle = bench.server.endpoint, bench.server.ca_bundle
        self.env = bench.env(
            BACKUPWARDEN_LOGS_INGESTION_ENDPOINT=self.endpoint,
            BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT=self.endpoint,
            BACKUPWARDEN_DCR_IMMUTABLE_ID=DEMO_DCR_ID,
            BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID=DEMO_WORKSPACE_ID,
            BACKUPWARDEN_OUTBOX_TABLE=outbox_table,
            BACKUPWARDEN_SUBSCRIPTIONS=SUB,
        )
        self.settings = Settings.from_env(self.env)
        self.clients = bench.clients(self.settings)

    def report(self) -> OutcomeReport:
        return build_outcome_report(report_query(self.settings, self.clients), timedelta(hours=24))

    def query(self, text: str) -> list[dict[str, Any]]:
        """The rows of `text` over the last day, through LogsQueryClient as an operator's tool reads them."""
        client = LogsQueryClient(StaticToken(), endpoint=self.endpoint, connection_verify=self.ca_bundle)
        result = client.query_workspace(DEMO_WORKSPACE_ID, text, timespan=timedelta(days=1))
        assert isinstance(result, LogsQueryResult), result
        return [dict(zip(t.columns, row, strict=True)) for t in result.tables for row in t.rows]


@pytest.fixture
def shipped(sweep_bench: SweepBench) -> Iterator[Shipped]:
    """The estate above with its backups finished (clock at NOW) and every finished job shipped."""
    sweep_bench.load(SCENARIO)
    provision_log_analytics(sweep_bench.emulator)
    outbox_table = f"outbox{uuid.uuid4().hex[:12]}"
    bench = Shipped(sweep_bench, outbox_table)
    bench.emulator.advance(30 * 60)
    assert bench.emulator.now() == NOW
    done = build_outcome_shipping(bench.settings, bench.clients, now=bench.emulator.now).run()
    assert all(result.complete and not result.parked for result in done.results), done.to_json()
    yield bench
    with TableServiceClient.from_connection_string(sweep_bench.storage) as service:
        service.delete_table(outbox_table)


def test_a_warning_job_is_shipped_with_its_own_status(shipped: Shipped) -> None:
    stored = shipped.emulator.backend(MonitorBackend).rows(DEMO_WORKSPACE_ID, JOB_OUTCOMES.table)
    backups = {(row["VmName"], row["Status"]) for row in stored if row["Operation"] == "Backup"}
    assert backups == {("warn-01", "CompletedWithWarnings"), ("ok-01", "Completed"), ("fail-01", "Failed")}

    records = shipped.query(load_kql("dedupe_job_outcomes"))
    warned = [row for row in records if row["Status"] == "CompletedWithWarnings"]
    assert [(row["VmName"], row["Operation"], row["ErrorCode"]) for row in warned] == [
        ("warn-01", "Backup", "")
    ]


def test_report_counts_warnings_apart_and_lists_the_vm(shipped: Shipped) -> None:
    report = shipped.report()

    assert report.jobs_by_status == STATUSES_24H
    assert report.with_warnings == (WARN_01,)
    # its backup made a recovery point: not exposed, and the time to its first recovery point is known
    assert [vm.vm_name for vm in report.without_recovery_point] == ["fail-01"]
    assert (
        FirstRecoveryPoint(
            vm_id("warn-01"),
            "warn-01",
            VAULT_ID,
            T - timedelta(hours=2),
            NOW - timedelta(minutes=5),
            2 * 3600 + 25 * 60,
        )
        in report.first_recovery_points
    )

    lines = [line.split() for line in render_report_table(report).splitlines()]
    assert ["CompletedWithWarnings", "1"] in lines and ["Completed", "3"] in lines and ["total", "5"] in lines
    assert ["==", "VMs", "with", "jobs", "completed", "with", "warnings", "=="] in lines
    assert ["warn-01", "1", "Backup", "2026-03-02", "12:25:00Z", "-"] in lines


def test_cli_report_json_has_the_warning_status_and_vm(
    shipped: Shipped, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in shipped.env.items():
        monkeypatch.setenv(name, value)

    assert main(["report", "--since", "24h", "--output", "json"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["jobs_by_status"] == STATUSES_24H
    assert printed["vms_with_warnings"] == [
        {
            "vm_id": vm_id("warn-01"),
            "vm_name": "warn-01",
            "vault_id": VAULT_ID,
            "jobs": 1,
            "last_operation": "Backup",
            "last_end_time": "2026-03-02T12:25:00Z",
            "last_warning_code": "",
            "last_warning": "",
        }
    ]


def test_workbook_shows_warnings_as_their_own_series_and_table(shipped: Shipped) -> None:
    queries = {q["name"]: bicep_string(q["query"]) for q in BicepEvaluator(WORKBOOK, {}).variable("queries")}

    over_time = shipped.query(queries["outcomes-over-time"])
    by_status: dict[str, int] = {}
    for row in over_time:
        by_status[row["Status"]] = by_status.get(row["Status"], 0) + row["Jobs"]
    assert by_status == STATUSES_24H

    warned = shipped.query(queries["vms-with-warnings"])
    assert [(row["VmName"], row["Jobs"], row["LastOperation"]) for row in warned] == [
        ("warn-01", 1, "Backup")
    ]
