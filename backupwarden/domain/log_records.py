"""Rows of the two Log Analytics tables, built from plain data; limits and odd characters handled here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES, LogTable
from backupwarden.domain.records import Outcome

# Log Analytics keeps at most 32 KB of a string column; Table Storage (the outbox) at most 64 KB of a
# string property, stored as UTF-16. 8,000 characters fit both whatever they are (4 UTF-8 bytes each at most).
MAX_FIELD_CHARS = 8_000
TRUNCATED = "…[truncated]"
_RECORD_NAMESPACE = uuid.UUID("6f0c5cf6-3a4e-4f5c-9a55-0d6a1f1b7a10")


@dataclass(frozen=True)
class FinishedJob:
    """A finished AzureIaasVM job as the service reports it."""

    job_id: str
    operation: str
    status: str
    vm_id: str
    vm_name: str
    vault_id: str
    subscription_id: str
    region: str
    start_time: datetime
    end_time: datetime
    error_code: str = ""
    error_message: str = ""
    recommendation: str = ""


@dataclass(frozen=True)
class Attribution:
    triggered_by: str  # Schedule, Sweep, NewVm, Remediation, Manual
    run_id: str = ""
    attempt: int = 0


def job_outcome_row(job: FinishedJob, attribution: Attribution) -> dict[str, Any]:
    """One BackupJobOutcomes_CL row; its RecordId is the job id, so a job is one record however often seen."""
    row = {
        "TimeGenerated": job.end_time,
        "RecordId": arm_key(job.job_id),
        "JobId": job.job_id,
        "Operation": job.operation,
        "Status": job.status,
        "ErrorCode": job.error_code,
        "ErrorMessage": job.error_message,
        "Recommendation": job.recommendation,
        "VmId": job.vm_id,
        "VmName": job.vm_name,
        "VaultId": job.vault_id,
        "SubscriptionId": job.subscription_id,
        "Region": job.region,
        "StartTime": job.start_time,
        "EndTime": job.end_time,
        "DurationSeconds": max(0.0, (job.end_time - job.start_time).total_seconds()),
        "TriggeredBy": attribution.triggered_by,
        "AutomationRunId": attribution.run_id,
        "Attempt": attribution.attempt,
    }
    return bounded(JOB_OUTCOMES, row)


def action_row(outcome: Outcome, *, source: str, dry_run: bool, at: datetime) -> dict[str, Any]:
    """One BackupAutomationActions_CL row; its RecordId is derived from (run, VM or scope, action)."""
    subject = outcome.vm_id or outcome.vault_id
    key = _utf8(f"{outcome.run_id}|{subject}|{outcome.action}")  # uuid5 encodes it as UTF-8
    row = {
        "TimeGenerated": at,
        "RecordId": str(uuid.uuid5(_RECORD_NAMESPACE, key)),
        "RunId": outcome.run_id,
        "Source": source,
        "Action": outcome.action,
        "Result": outcome.result.value,
        "Reason": outcome.reason,
        "VmId": outcome.vm_id,
        "VaultId": outcome.vault_id,
        "JobId": outcome.job_id or "",
        "ErrorCode": outcome.error_code or "",
        "DryRun": dry_run,
    }
    return bounded(AUTOMATION_ACTIONS, row)


def bounded(table: LogTable, row: dict[str, Any]) -> dict[str, Any]:
    """The row with every string made valid UTF-8 and cut to the field limit, and times in UTC."""
    cleaned: dict[str, Any] = {}
    for column in table.columns:
        value = row.get(column.name)
        if column.type == "string":
            text = "" if value is None else str(value)
            text = _utf8(text)
            if len(text) > MAX_FIELD_CHARS:
                text = text[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
            cleaned[column.name] = text
        elif column.type == "datetime" and isinstance(value, datetime):
            cleaned[column.name] = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        else:
            cleaned[column.name] = value
    return cleaned


def _utf8(text: str) -> str:
    """The text with what UTF-8 cannot encode (lone surrogates, as a JSON \\udc00 escape yields) replaced."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
