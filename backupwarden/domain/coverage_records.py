"""Rows of BackupCoverage_CL for one coverage run, built from its figures and classifications.

One run is one row for the total, one per subscription, one per region (their figures) and one per
VM in scope (its state, action and time without a recovery point): the row count grows with the
scope, linearly. Every row carries the run's figures' columns (InScope, Covered, CoveragePercent),
the coverage target and whether the run was a dry run, so each row can be read on its own: an alert
compares CoveragePercent with the Target its own row carries, and a VM's row sums like a figure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.coverage import CoverageFigure, CoverageReport, in_scope
from backupwarden.domain.log_records import bounded
from backupwarden.domain.log_schema import COVERAGE
from backupwarden.domain.protection_states import Classification

_RECORD_NAMESPACE = uuid.UUID("2b9e7c1d-52a4-4c0e-8f0e-6c3f1d2a9b47")


def coverage_rows(
    report: CoverageReport,
    classifications: Iterable[Classification],
    *,
    run_id: str,
    at: datetime,
    target: float,
    dry_run: bool,
    vault_ids: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The run's rows: total, subscriptions, regions, then the VMs in scope.

    `vault_ids` maps a VM id (any case) to the vault the run chose or found for it; a VM missing
    there keeps the vault of the item it was classified by ("" when none protects it).
    """
    vaults = {arm_key(vm_id): vault for vm_id, vault in (vault_ids or {}).items()}
    common = {"TimeGenerated": at, "RunId": run_id, "Target": float(target), "DryRun": dry_run}
    rows = [_figure_row(common, "total", report.total)]
    rows += [_figure_row(common, "subscription", f, SubscriptionId=f.scope) for f in report.by_subscription]
    rows += [_figure_row(common, "region", f, Region=f.scope) for f in report.by_region]
    for c in classifications:
        if in_scope(c):
            rows.append(_vm_row(common, c, vaults.get(arm_key(c.vm.id), c.vault_id)))
    return rows


def _figure_row(common: dict[str, Any], kind: str, figure: CoverageFigure, **scope: str) -> dict[str, Any]:
    row = {
        **common,
        "RecordId": _record_id(common["RunId"], kind, figure.scope),
        "Kind": kind,
        **scope,
        "InScope": figure.in_scope,
        "Covered": figure.covered,
        "CoveragePercent": figure.percent,
    }
    return bounded(COVERAGE, row)


def _vm_row(common: dict[str, Any], c: Classification, vault_id: str) -> dict[str, Any]:
    covered = 1 if c.within_rpo else 0
    row = {
        **common,
        "RecordId": _record_id(common["RunId"], "vm", arm_key(c.vm.id)),
        "Kind": "vm",
        # lower-cased as the report groups them, so a VM's row and its subscription's row match
        "SubscriptionId": c.vm.subscription_id.lower(),
        "Region": c.vm.region.lower(),
        "VmId": c.vm.id,
        "VmName": c.vm.name,
        "VaultId": vault_id,
        "State": c.state.value,
        "Action": c.action.value,
        "Reason": c.reason + (f"; {c.recommendation}" if c.recommendation else ""),
        "WithinRpo": c.within_rpo,
        "HoursWithoutRecoveryPoint": c.hours_without_recovery_point,
        "InScope": 1,
        "Covered": covered,
        "CoveragePercent": 100.0 * covered,
    }
    return bounded(COVERAGE, row)


def _record_id(run_id: str, kind: str, scope: str) -> str:
    """Derived from (run, kind, scope): a run's row is one record however often it is written."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{run_id}|{kind}|{scope}".encode("utf-8", "replace").decode()))
