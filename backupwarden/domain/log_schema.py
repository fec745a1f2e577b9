"""The Log Analytics tables backupwarden writes: the one definition infra, KQL and code follow.

`infra/` declares the DCR streams and the custom tables from these columns, and the KQL the
project ships reads them; tests hold all three to this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Log Analytics / DCR column type: string, datetime, int, long, real, boolean, dynamic


@dataclass(frozen=True)
class LogTable:
    table: str  # the custom table, ending in _CL
    stream: str  # the DCR input stream, starting with Custom-
    columns: tuple[Column, ...]
    id_column: str  # carries the record id: the Logs Ingestion API does not de-duplicate

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def type_of(self, name: str) -> str:
        return next(c.type for c in self.columns if c.name == name)


def _columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, kind) for name, kind in pairs)


JOB_OUTCOMES = LogTable(
    table="BackupJobOutcomes_CL",
    stream="Custom-BackupJobOutcomes",
    id_column="RecordId",
    columns=_columns(
        ("TimeGenerated", "datetime"),
        ("RecordId", "string"),
        ("JobId", "string"),
        ("Operation", "string"),
        ("Status", "string"),
        ("ErrorCode", "string"),
        ("ErrorMessage", "string"),
        ("Recommendation", "string"),
        ("VmId", "string"),
        ("VmName", "string"),
        ("VaultId", "string"),
        ("SubscriptionId", "string"),
        ("Region", "string"),
        ("StartTime", "datetime"),
        ("EndTime", "datetime"),
        ("DurationSeconds", "real"),
        ("TriggeredBy", "string"),
        ("AutomationRunId", "string"),
        ("Attempt", "int"),
    ),
)

AUTOMATION_ACTIONS = LogTable(
    table="BackupAutomationActions_CL",
    stream="Custom-BackupAutomationActions",
    id_column="RecordId",
    columns=_columns(
        ("TimeGenerated", "datetime"),
        ("RecordId", "string"),
        ("RunId", "string"),
        ("Source", "string"),
        ("Action", "string"),
        ("Result", "string"),
        ("Reason", "string"),
        ("VmId", "string"),
        ("VaultId", "string"),
        ("JobId", "string"),
        ("ErrorCode", "string"),
        ("DryRun", "boolean"),
    ),
)

# One run of the coverage scan: a row for the total, one per subscription and region (their figures),
# one per VM in scope (its state and time without a recovery point); docs/coverage.md.
COVERAGE = LogTable(
    table="BackupCoverage_CL",
    stream="Custom-BackupCoverage",
    id_column="RecordId",
    columns=_columns(
        ("TimeGenerated", "datetime"),
        ("RecordId", "string"),
        ("RunId", "string"),
        ("Kind", "string"),
        ("SubscriptionId", "string"),
        ("Region", "string"),
        ("VmId", "string"),
        ("VmName", "string"),
        ("VaultId", "string"),
        ("State", "string"),
        ("Action", "string"),
        ("Reason", "string"),
        ("WithinRpo", "boolean"),
        ("HoursWithoutRecoveryPoint", "real"),
        ("InScope", "int"),
        ("Covered", "int"),
        ("CoveragePercent", "real"),
        ("Target", "real"),
        ("DryRun", "boolean"),
    ),
)

TABLES = (JOB_OUTCOMES, AUTOMATION_ACTIONS, COVERAGE)
COVERAGE_KINDS = ("total", "subscription", "region", "vm")
FINISHED_JOB_STATUSES = ("Completed", "CompletedWithWarnings", "Failed", "Cancelled")
TRIGGERED_BY = ("Schedule", "Sweep", "NewVm", "Remediation", "Manual")
SOURCES = ("Timer", "EventGrid", "Queue", "Alert", "Cli")


def table_for_stream(stream: str) -> LogTable:
    return next(t for t in TABLES if t.stream == stream)
