"""Collect finished backup and configure-backup jobs since the watermark, attributed to our actions.

Resource Graph answers for every vault of every subscription in one paged query, where the
vault-by-vault `backupJobs` list costs one request per vault (measured: docs/outcomes.md). It
lags the service, so each run re-reads an overlap before the watermark; job outcomes already
shipped are recognised by their id and not sent again.

A job is attributed by the claim that names it; an ad hoc Backup job no claim names may be the job of
a trigger whose answer was lost before its job id was known (`backup_now`): the VM's first such job
after that claim is attributed to it.

The query runs through `GraphRows`, the Resource Graph adapter the composition root hands in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backupwarden.adapters.storage.ledger import JobAttribution, Ledger
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.log_records import Attribution, FinishedJob, job_outcome_row
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.times import parse_time, utc_now
from backupwarden.flows.backup_now import LEDGER_ACTION

WATERMARK = "jobs"
FIRST_RUN_LOOKBACK = timedelta(days=1)

FINISHED_JOBS_QUERY = """
recoveryservicesresources
| where type =~ 'microsoft.recoveryservices/vaults/backupjobs'
| where tostring(properties.backupManagementType) =~ 'AzureIaasVM'
| extend operation = tostring(properties.operation), status = tostring(properties.status),
         endTime = todatetime(properties.endTime)
| where operation in ('Backup', 'ConfigureBackup')
| where status in ('Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled')
| where endTime > datetime({since})
| extend vaultId = tostring(split(tolower(id), '/backupjobs/')[0])
| join kind=leftouter (
    resources
    | where type =~ 'microsoft.recoveryservices/vaults'
    | project vaultId = tolower(id), region = location
  ) on vaultId
| project id, jobId = name, subscriptionId, vaultId, region, operation, status, endTime, properties
| order by id asc
"""


GraphRows = Callable[[str, list[str]], Iterable[dict[str, Any]]]
"""Every row of a Resource Graph query over the given subscriptions, all pages."""


@dataclass(frozen=True)
class Collected:
    found: int
    added: int
    newest_end: datetime | None


class JobOutcomeCollector:
    def __init__(
        self,
        graph_rows: GraphRows,
        ledger: Ledger,
        outbox: Outbox,
        subscriptions: Callable[[], list[str]],
        *,
        overlap: timedelta = timedelta(hours=1),
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._graph_rows = graph_rows
        self._ledger = ledger
        self._outbox = outbox
        self._subscriptions = subscriptions
        self._overlap = overlap
        self._now = now

    def collect(self, watermark: datetime | None) -> Collected:
        since = (watermark or self._now() - FIRST_RUN_LOOKBACK) - self._overlap
        query = FINISHED_JOBS_QUERY.format(since=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        found = [(finished_job(row), _ad_hoc(row)) for row in self._graph_rows(query, self._subscriptions())]
        found.sort(key=lambda pair: pair[0].start_time)  # a claim without its job id takes the first
        jobs = [job for job, _ in found]
        taken: set[tuple[str, str, str, int]] = set()
        rows = [job_outcome_row(job, self._attribution(job, ad_hoc, taken)) for job, ad_hoc in found]
        added = self._outbox.add(JOB_OUTCOMES.stream, rows, skip_shipped=True)
        newest = max((job.end_time for job in jobs), default=None)
        return Collected(found=len(jobs), added=added, newest_end=newest)

    def _attribution(
        self, job: FinishedJob, ad_hoc: bool, taken: set[tuple[str, str, str, int]]
    ) -> Attribution:
        """`taken`: the claims this run attributed a job to; a claim starts one job."""
        unknown_job_action = LEDGER_ACTION if ad_hoc and job.operation == "Backup" else None
        ours = self._ledger.job_attribution(
            job.job_id, job.vm_id, job.start_time, unknown_job_action=unknown_job_action
        )
        if ours is not None and _claim_of(ours) not in taken:
            taken.add(_claim_of(ours))
            return Attribution(ours.triggered_by or "Manual", ours.run_id, ours.attempt)
        return Attribution("Schedule" if job.operation == "Backup" else "Manual")


def _claim_of(job: JobAttribution) -> tuple[str, str, str, int]:
    return (arm_key(job.vm_id), job.action, job.run_id, job.attempt)


def _ad_hoc(row: dict[str, Any]) -> bool:
    """Whether the job was started on demand, not by the schedule (`isUserTriggered`; absent: may be)."""
    properties = row.get("properties") or {}
    if isinstance(properties, str):
        properties = json.loads(properties)
    return properties.get("isUserTriggered") is not False


def finished_job(row: dict[str, Any]) -> FinishedJob:
    properties = row.get("properties") or {}
    if isinstance(properties, str):
        properties = json.loads(properties)
    container = arm_key(str(properties.get("containerName", "")))  # iaasvmcontainerv2;{rg};{vm}
    _, _, rest = container.partition(";")
    resource_group, _, vm_name = rest.partition(";")
    subscription = arm_key(str(row.get("subscriptionId", "")))
    errors = properties.get("errorDetails") or [{}]
    first_error = errors[0] if isinstance(errors[0], dict) else {}
    return FinishedJob(
        job_id=str(row.get("jobId", "")),
        operation=str(row.get("operation", "")),
        status=str(row.get("status", "")),
        vm_id=f"/subscriptions/{subscription}/resourcegroups/{resource_group}/providers/microsoft.compute/virtualmachines/{vm_name}",
        vm_name=str(properties.get("entityFriendlyName", vm_name)),
        vault_id=str(row.get("vaultId", "")),
        subscription_id=subscription,
        region=str(row.get("region") or ""),
        start_time=parse_time(properties.get("startTime")),
        end_time=parse_time(row.get("endTime") or properties.get("endTime")),
        error_code=str(first_error.get("errorCode", "")),
        error_message=str(first_error.get("errorString", "")),
        recommendation=" ".join(str(r) for r in first_error.get("recommendations") or []),
    )
