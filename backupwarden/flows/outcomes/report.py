"""`python -m backupwarden report`: what Log Analytics says about the window, from the shipped KQL.

Five queries of `kql/`, each over job outcomes de-duplicated by RecordId, with the window sent as
the query API's `timespan`: jobs by status, failures by error code with the recommendation, VMs
whose jobs completed with warnings, VMs still without a recovery point, and the time to the first
recovery point of VMs newly protected.

`CompletedWithWarnings` is a status of its own in every count; where a recovery point is what
matters (without a recovery point, time to the first one) it counts as one, as it is: a backup that
completed with warnings created its recovery point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from backupwarden.adapters.azure.logs_query import Timespan
from backupwarden.domain.kql import load_kql
from backupwarden.domain.text_table import text_table
from backupwarden.domain.times import iso_z, parse_optional_time


class QueryRows(Protocol):
    def rows(self, query: str, timespan: Timespan, step: str = ...) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class FailureGroup:
    error_code: str
    recommendation: str
    jobs: int
    vms: int
    vm_names: tuple[str, ...]


@dataclass(frozen=True)
class VmWithWarnings:
    """A VM whose jobs completed with warnings in the window; the Last* fields describe the newest one."""

    vm_id: str
    vm_name: str
    vault_id: str
    jobs: int
    last_operation: str
    last_end_time: datetime | None
    last_warning_code: str
    last_warning: str


@dataclass(frozen=True)
class VmWithoutRecoveryPoint:
    vm_id: str
    vm_name: str
    vault_id: str
    last_operation: str
    last_status: str
    last_error_code: str
    last_end_time: datetime | None


@dataclass(frozen=True)
class FirstRecoveryPoint:
    vm_id: str
    vm_name: str
    vault_id: str
    configured_at: datetime | None
    first_recovery_point_at: datetime | None  # None: no backup has completed since configuration
    seconds: int | None


@dataclass(frozen=True)
class OutcomeReport:
    window: timedelta
    jobs_by_status: dict[str, int]
    failures: tuple[FailureGroup, ...]
    without_recovery_point: tuple[VmWithoutRecoveryPoint, ...]
    first_recovery_points: tuple[FirstRecoveryPoint, ...]
    with_warnings: tuple[VmWithWarnings, ...] = ()

    @property
    def jobs_total(self) -> int:
        return sum(self.jobs_by_status.values())

    def to_json(self) -> dict[str, object]:
        return {
            "window_seconds": int(self.window.total_seconds()),
            "jobs_total": self.jobs_total,
            "jobs_by_status": dict(self.jobs_by_status),
            "failures": [
                {
                    "error_code": f.error_code,
                    "recommendation": f.recommendation,
                    "jobs": f.jobs,
                    "vms": f.vms,
                    "vm_names": list(f.vm_names),
                }
                for f in self.failures
            ],
            "vms_with_warnings": [
                {
                    "vm_id": w.vm_id,
                    "vm_name": w.vm_name,
                    "vault_id": w.vault_id,
                    "jobs": w.jobs,
                    "last_operation": w.last_operation,
                    "last_end_time": _iso(w.last_end_time),
                    "last_warning_code": w.last_warning_code,
                    "last_warning": w.last_warning,
                }
                for w in self.with_warnings
            ],
            "vms_without_recovery_point": [
                {
                    "vm_id": v.vm_id,
                    "vm_name": v.vm_name,
                    "vault_id": v.vault_id,
                    "last_operation": v.last_operation,
                    "last_status": v.last_status,
                    "last_error_code": v.last_error_code,
                    "last_end_time": _iso(v.last_end_time),
                }
                for v in self.without_recovery_point
            ],
            "time_to_first_recovery_point": [
                {
                    "vm_id": p.vm_id,
                    "vm_name": p.vm_name,
                    "vault_id": p.vault_id,
                    "configured_at": _iso(p.configured_at),
                    "first_recovery_point_at": _iso(p.first_recovery_point_at),
                    "seconds": p.seconds,
                }
                for p in self.first_recovery_points
            ],
        }


def build_outcome_report(source: QueryRows, window: timedelta) -> OutcomeReport:
    """Run the five report queries over the last `window`; AzureCallError if one fails."""
    statuses = source.rows(load_kql("report_status_counts"), window, "report: jobs by status")
    failures = source.rows(load_kql("report_failures"), window, "report: failures by error code")
    warnings = source.rows(load_kql("report_warnings"), window, "report: jobs completed with warnings")
    exposed = source.rows(load_kql("report_unprotected"), window, "report: VMs without a recovery point")
    firsts = source.rows(load_kql("report_time_to_first_rp"), window, "report: time to first recovery point")
    return OutcomeReport(
        window=window,
        jobs_by_status={_text(row["Status"]): _count(row["Jobs"]) for row in statuses},
        failures=tuple(_failure(row) for row in failures),
        without_recovery_point=tuple(_exposed(row) for row in exposed),
        first_recovery_points=tuple(_first(row) for row in firsts),
        with_warnings=tuple(_warned(row) for row in warnings),
    )


# --- rows -> records ---------------------------------------------------------------------------
def _failure(row: dict[str, Any]) -> FailureGroup:
    return FailureGroup(
        error_code=_text(row["ErrorCode"]),
        recommendation=_text(row["Recommendation"]),
        jobs=_count(row["Jobs"]),
        vms=_count(row["VMs"]),
        vm_names=tuple(sorted(_text(name) for name in _array(row["VmNames"]))),
    )


def _warned(row: dict[str, Any]) -> VmWithWarnings:
    return VmWithWarnings(
        vm_id=_text(row["VmId"]),
        vm_name=_text(row["VmName"]),
        vault_id=_text(row["VaultId"]),
        jobs=_count(row["Jobs"]),
        last_operation=_text(row["LastOperation"]),
        last_end_time=parse_optional_time(row["LastEndTime"]),
        last_warning_code=_text(row["LastWarningCode"]),
        last_warning=_text(row["LastWarning"]),
    )


def _exposed(row: dict[str, Any]) -> VmWithoutRecoveryPoint:
    return VmWithoutRecoveryPoint(
        vm_id=_text(row["VmId"]),
        vm_name=_text(row["VmName"]),
        vault_id=_text(row["VaultId"]),
        last_operation=_text(row["LastOperation"]),
        last_status=_text(row["LastStatus"]),
        last_error_code=_text(row["LastErrorCode"]),
        last_end_time=parse_optional_time(row["LastEndTime"]),
    )


def _first(row: dict[str, Any]) -> FirstRecoveryPoint:
    seconds = row["SecondsToFirstRecoveryPoint"]
    return FirstRecoveryPoint(
        vm_id=_text(row["VmId"]),
        vm_name=_text(row["VmName"]),
        vault_id=_text(row["VaultId"]),
        configured_at=parse_optional_time(row["ConfiguredAt"]),
        first_recovery_point_at=parse_optional_time(row["FirstRecoveryPointAt"]),
        seconds=None if seconds is None else _count(seconds),
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _count(value: Any) -> int:
    return int(value or 0)


def _array(value: Any) -> list[Any]:
    """A dynamic cell: the SDK hands it over as JSON text."""
    if value is None or value == "":
        return []
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed) if isinstance(parsed, list) else [parsed]


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment else None


# --- the table -----------------------------------------------------------------------------------
def render_report_table(report: OutcomeReport) -> str:
    sections = [
        _status_section(report),
        _failures_section(report),
        _warnings_section(report),
        _exposed_section(report),
        _first_section(report),
    ]
    return "\n\n".join(sections)


def _status_section(report: OutcomeReport) -> str:
    rows = [("STATUS", "JOBS")] + [(status, str(n)) for status, n in sorted(report.jobs_by_status.items())]
    rows.append(("total", str(report.jobs_total)))
    return f"== finished jobs in the last {window_text(report.window)}, by status ==\n{text_table(rows)}"


def _failures_section(report: OutcomeReport) -> str:
    title = "== failures by error code =="
    if not report.failures:
        return f"{title}\nnone"
    rows = [("ERROR CODE", "JOBS", "VMS", "VM NAMES", "RECOMMENDATION")] + [
        (f.error_code or "(none)", str(f.jobs), str(f.vms), ", ".join(f.vm_names), f.recommendation)
        for f in report.failures
    ]
    return f"{title}\n{text_table(rows)}"


def _warnings_section(report: OutcomeReport) -> str:
    title = "== VMs with jobs completed with warnings =="
    if not report.with_warnings:
        return f"{title}\nnone"
    rows = [("VM", "JOBS", "LAST JOB", "ENDED", "WARNING")]
    for vm in report.with_warnings:
        warning = ": ".join(part for part in (vm.last_warning_code, vm.last_warning) if part) or "-"
        rows.append(
            (vm.vm_name or vm.vm_id, str(vm.jobs), vm.last_operation, _clock(vm.last_end_time), warning)
        )
    return f"{title}\n{text_table(rows)}"


def _exposed_section(report: OutcomeReport) -> str:
    title = "== VMs still without a recovery point =="
    if not report.without_recovery_point:
        return f"{title}\nnone"
    rows = [("VM", "LAST JOB", "ENDED")]
    for vm in report.without_recovery_point:
        last = f"{vm.last_operation} {vm.last_status}"
        if vm.last_error_code:
            last = f"{last}: {vm.last_error_code}"
        rows.append((vm.vm_name or vm.vm_id, last, _clock(vm.last_end_time)))
    return f"{title}\n{text_table(rows)}"


def _first_section(report: OutcomeReport) -> str:
    title = "== time to first recovery point, VMs newly protected =="
    if not report.first_recovery_points:
        return f"{title}\nnone"
    rows = [("VM", "CONFIGURED", "FIRST RECOVERY POINT", "TIME")]
    for vm in report.first_recovery_points:
        elapsed = "-" if vm.seconds is None else duration_text(timedelta(seconds=vm.seconds))
        rows.append(
            (vm.vm_name or vm.vm_id, _clock(vm.configured_at), _clock(vm.first_recovery_point_at), elapsed)
        )
    return f"{title}\n{text_table(rows)}"


def window_text(window: timedelta) -> str:
    """The window as `--since` spells it: `24h`, `7d`, `90m`."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration_text(span: timedelta) -> str:
    """`45s`, `12m 30s`, `2h 05m`, `3d 04h`: two units at most."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"
