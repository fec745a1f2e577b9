"""BackupCoverage_CL rows of one coverage run (backupwarden/domain/coverage_records.py), from a scan of
emulator/scenarios/coverage.yaml read through the real SDK clients, against a hand count of the estate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.app import build_coverage
from backupwarden.domain.coverage import coverage
from backupwarden.domain.coverage_records import coverage_rows
from backupwarden.domain.log_schema import COVERAGE
from backupwarden.flows.coverage import CoverageScan
from backupwarden.settings import Settings
from emulator import EmulatorServer
from emulator.scenario import load_scenario_file

PROD = "c0ffee00-0000-4000-8000-000000000001"
DEV = "c0ffee00-0000-4000-8000-000000000002"
TARGET = 95.0
# Hand count of coverage.yaml at its start (08:00Z): in scope is every VM but the excluded and the orphaned
# one; covered only cov-current (a recovery point 6 hours old, a daily policy).
IN_SCOPE_PROD = {
    "cov-new",
    "cov-unprotected",
    "cov-pending",
    "cov-current",
    "cov-failing",
    "cov-stopped",
    "cov-ultra",
    "cov-denied",
    "cov-agent-not-ready",
}
IN_SCOPE_DEV = {"cov-stale", "cov-soft-deleted", "cov-vault-full"}
NORTH_EUROPE = {"cov-ultra"}  # cov-orphaned is in northeurope too, but out of scope
COVERED = {"cov-current"}


def coverage_settings(server: EmulatorServer, **overrides: str) -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BACKUPWARDEN_SUBSCRIPTIONS": f"{PROD},{DEV}",
            "BACKUPWARDEN_ARM_ENDPOINT": server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "x",
            "BACKUPWARDEN_CA_BUNDLE": server.ca_bundle,
            "BACKUPWARDEN_HTTP_RETRY_TOTAL": "2",
            **overrides,
        }
    )


def scan_coverage_estate(server: EmulatorServer) -> CoverageScan:
    """coverage.yaml on a frozen clock, scanned once through the SDK clients."""
    emulator = server.emulator
    emulator.reset()
    scenario = load_scenario_file("coverage")
    scenario["clock"]["scale"] = 0
    emulator.load_scenario(scenario)
    try:
        settings = coverage_settings(server)
        with AzureClients(settings) as clients:
            return build_coverage(settings, clients, now=emulator.now).run()
    finally:
        with emulator.lock:
            emulator.clock.set(emulator.clock.now(), scale=1.0)


@pytest.fixture(scope="module")
def scan(emulator_server: EmulatorServer) -> CoverageScan:
    return scan_coverage_estate(emulator_server)


def rows_of(scan: CoverageScan, **kwargs: Any) -> list[dict[str, Any]]:
    arguments: dict[str, Any] = {"run_id": "run-1", "at": scan.at, "target": TARGET, "dry_run": False}
    return coverage_rows(scan.report, scan.classifications, **{**arguments, **kwargs})


def by_kind(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["Kind"] == kind]


def test_the_figures_rows_match_the_hand_count(scan: CoverageScan) -> None:
    assert scan.complete
    rows = rows_of(scan)

    [total] = by_kind(rows, "total")
    assert (total["InScope"], total["Covered"]) == (12, 1)
    assert total["CoveragePercent"] == pytest.approx(100 / 12)
    subscriptions = {r["SubscriptionId"]: (r["InScope"], r["Covered"]) for r in by_kind(rows, "subscription")}
    assert subscriptions == {PROD: (len(IN_SCOPE_PROD), 1), DEV: (len(IN_SCOPE_DEV), 0)}
    regions = {
        r["Region"]: (r["InScope"], r["Covered"], r["CoveragePercent"]) for r in by_kind(rows, "region")
    }
    assert regions == {"northeurope": (1, 0, 0.0), "westeurope": (11, 1, pytest.approx(100 / 11))}
    assert len(rows) == 1 + 2 + 2 + 12  # linear: the figures, then one row per VM in scope


def test_one_row_per_vm_in_scope_with_its_state_and_time_without_a_recovery_point(scan: CoverageScan) -> None:
    rows = {r["VmName"]: r for r in by_kind(rows_of(scan), "vm")}

    assert set(rows) == IN_SCOPE_PROD | IN_SCOPE_DEV
    assert {name for name, r in rows.items() if r["WithinRpo"]} == COVERED
    assert {name for name, r in rows.items() if r["Covered"] == 1} == COVERED
    assert {name for name, r in rows.items() if r["SubscriptionId"] == DEV} == IN_SCOPE_DEV
    assert {name for name, r in rows.items() if r["Region"] == "northeurope"} == NORTH_EUROPE
    assert (rows["cov-stale"]["State"], rows["cov-stale"]["HoursWithoutRecoveryPoint"]) == ("stale", 72.0)
    assert (rows["cov-stopped"]["State"], rows["cov-stopped"]["HoursWithoutRecoveryPoint"]) == (
        "stopped",
        240.0,
    )
    assert (rows["cov-current"]["HoursWithoutRecoveryPoint"], rows["cov-current"]["CoveragePercent"]) == (
        6.0,
        100.0,
    )
    assert (
        rows["cov-unprotected"]["Action"] == "none"
        and "ENROLL_EXISTING=off" in rows["cov-unprotected"]["Reason"]
    )
    assert rows["cov-current"]["VaultId"].lower().endswith("/vaults/rsv-cov-weu")
    assert rows["cov-unprotected"]["VaultId"] == ""  # no vault protects it, and the caller named none


def test_every_row_carries_the_run_the_target_and_the_schema_columns(scan: CoverageScan) -> None:
    rows = rows_of(scan, run_id="run-7", target=99.5, dry_run=True)

    assert {tuple(row) for row in rows} == {COVERAGE.column_names}
    assert {(r["RunId"], r["TimeGenerated"], r["Target"], r["DryRun"]) for r in rows} == {
        ("run-7", scan.at, 99.5, True)
    }
    ids = Counter(r["RecordId"] for r in rows)
    assert len(ids) == len(rows)  # one record per row
    assert {r["RecordId"] for r in rows_of(scan, run_id="run-7")} == set(ids)  # the same run, the same ids
    assert not {r["RecordId"] for r in rows_of(scan, run_id="run-8")} & set(ids)


def test_the_vault_the_caller_names_wins_whatever_the_case_of_the_vm_id(scan: CoverageScan) -> None:
    unprotected = next(c for c in scan.classifications if c.vm.name == "cov-unprotected")
    chosen = (
        f"/subscriptions/{PROD}/resourceGroups/rg-backup-weu/providers/Microsoft.RecoveryServices/vaults/v9"
    )

    rows = rows_of(scan, vault_ids={unprotected.vm.id.upper(): chosen})

    vaults = {r["VmName"]: r["VaultId"] for r in by_kind(rows, "vm")}
    assert vaults["cov-unprotected"] == chosen
    assert vaults["cov-current"].lower().endswith("/vaults/rsv-cov-weu")  # not named: its item's vault


def test_nothing_in_scope_is_no_percentage_not_zero(scan: CoverageScan) -> None:
    excluded = [c for c in scan.classifications if c.vm.name in ("cov-excluded", "cov-orphaned")]

    rows = coverage_rows(coverage(excluded), excluded, run_id="r", at=scan.at, target=TARGET, dry_run=False)

    assert [(r["Kind"], r["InScope"], r["CoveragePercent"]) for r in rows] == [("total", 0, None)]
