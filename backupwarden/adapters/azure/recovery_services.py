"""Recovery Services: verify protected items, trigger "Backup now", follow its operation to the job id,
find an item's running backup job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlparse

from azure.core.exceptions import AzureError, ServiceResponseError
from azure.core.utils import case_insensitive_dict
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import BackupRequestResource, IaasVMBackupRequest

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.times import parse_optional_time

FABRIC = "Azure"
MIN_POLL_INTERVAL_S = 0.25  # an operation answered without Retry-After is not polled in a tight loop
DEFAULT_POLL_INTERVAL_S = 1.0  # the az CLI ignores the hint too: 1 s between reads (5 s in recent releases)
RUNNING_BACKUPS_FILTER = "status eq 'InProgress' and operation eq 'Backup'"
CONTAINER_PREFIX = "iaasvmcontainer;"  # the container name the app sends; jobs name it without the prefix


def poll_delay_s(retry_after_s: float, poll_interval_s: float) -> float:
    """The wait before reading a running operation again: its Retry-After, at most `poll_interval_s`.

    Azure answers a container refresh, a protection PUT and a backup POST with `Retry-After: 60`,
    while the refresh takes about 15 s and configuring protection about 35 s. Waiting the whole hint
    would add up to 45 s and 25 s to every new VM's first backup (the goal is within a minute), so
    the hint only counts up to `poll_interval_s`. An answer without the hint waits MIN_POLL_INTERVAL_S
    (or `poll_interval_s`, if shorter).
    """
    return min(max(retry_after_s, MIN_POLL_INTERVAL_S), poll_interval_s)


@dataclass(frozen=True)
class VaultRef:
    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def parse(cls, vault_id: str) -> VaultRef:
        parts = vault_id.strip("/").split("/")
        lowered = [arm_key(p) for p in parts]
        try:
            sub = parts[lowered.index("subscriptions") + 1]
            rg = parts[lowered.index("resourcegroups") + 1]
            name = parts[lowered.index("vaults") + 1]
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not a Recovery Services vault id: {vault_id!r}") from exc
        return cls(sub, rg, name)

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.RecoveryServices/vaults/{self.name}"
        )


@dataclass(frozen=True)
class TriggeredBackup:
    operation_id: str
    job_id: str | None


@dataclass(frozen=True)
class ItemBackupJob:
    """One Backup job of an item, as a job list shows it."""

    job_id: str
    status: str
    started: datetime | None
    user_triggered: bool | None  # `isUserTriggered`: ad hoc (true) or scheduled (false), bms.json
    error_code: str | None  # the first error's code, when the job failed


class AnswerLost(AzureCallError):
    """The request went out and no answer came back (the connection dropped or timed out after
    sending, azure-core's ServiceResponseError): the service may have acted on it. azure-core does
    not repeat a POST, so the caller must ask the service what happened (azure-facts §11)."""


def _raw(model: Any) -> dict[str, Any]:
    """The wire JSON of an SDK model: IaaS VM item properties are only complete there (azure-facts §10)."""
    return dict(model.as_dict()) if hasattr(model, "as_dict") else dict(model)


def _wire_json(pipeline_response: Any, _model: Any, _headers: Any) -> dict[str, Any]:
    """The answer's JSON as sent (the SDK call's `cls`): what `_raw` rebuilds from the model, without
    rebuilding it (a model's `as_dict` is about a tenth of a verification read's CPU)."""
    return dict(pipeline_response.http_response.json())


# a vault's Azure VM items, as every vault-by-vault read lists them
IAAS_VM_ITEMS_FILTER = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"


class RecoveryServices:
    """One vault's worth of Recovery Services calls through `RecoveryServicesBackupClient`."""

    def __init__(
        self,
        client_for: Callable[[str], RecoveryServicesBackupClient],
        *,
        poll_timeout_s: float = 300,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        sleep: Callable[[float], None] = time.sleep,
        read_triggered_job_id: bool = True,
    ) -> None:
        """`read_triggered_job_id=False`: "Backup now" sends the POST alone and returns no job id, for a
        flow that triggers many VMs and learns the jobs from the job list later (the ledger keeps such a
        trigger unconfirmed until it does; the outcomes collector attributes its job): one request per
        trigger instead of the POST and at least one read of its operation."""
        self._client_for = client_for
        self._poll_timeout_s = poll_timeout_s
        self._poll_interval_s = poll_interval_s
        self._sleep = sleep
        self._read_triggered_job_id = read_triggered_job_id

    def protected_item(self, vault: VaultRef, container: str, item: str) -> dict[str, Any]:
        client = self._client_for(vault.subscription_id)
        try:
            found = client.protected_items.get(
                vault.name, vault.resource_group, FABRIC, container, item, cls=_wire_json
            )
        except AzureError as exc:
            raise AzureCallError.from_sdk("verify protected item", exc) from exc
        return cast(dict[str, Any], found)  # what `cls` returned

    def protected_items(self, vault: VaultRef) -> Iterator[dict[str, Any]]:
        client = self._client_for(vault.subscription_id)
        try:
            for found in client.backup_protected_items.list(
                vault.name,
                vault.resource_group,
                filter=IAAS_VM_ITEMS_FILTER,
            ):
                yield _raw(found)
        except AzureError as exc:
            raise AzureCallError.from_sdk("list protected items", exc) from exc

    def jobs(self, vault: VaultRef, odata_filter: str) -> Iterator[dict[str, Any]]:
        client = self._client_for(vault.subscription_id)
        try:
            for found in client.backup_jobs.list(vault.name, vault.resource_group, filter=odata_filter):
                yield _raw(found)
        except AzureError as exc:
            raise AzureCallError.from_sdk("list backup jobs", exc) from exc

    def running_backup_job(self, vault: VaultRef, container: str) -> ItemBackupJob | None:
        """The item's Backup job the job list shows InProgress, if any (`container` with or without
        the `iaasvmcontainer;` prefix). Lists trail the service: a job started moments ago may be
        missing for a while (docs/emulator.md, `job_list_lag_s`)."""
        return next(iter(self._item_backup_jobs(vault, container, RUNNING_BACKUPS_FILTER)), None)

    def backup_jobs_started(
        self, vault: VaultRef, container: str, since: datetime, until: datetime
    ) -> list[ItemBackupJob]:
        """The item's Backup jobs started between `since` and `until`, oldest first (the list's time
        window, as the az CLI sends it: both ends)."""
        window = (
            f"operation eq 'Backup' and startTime eq '{odata_time(since)}'"
            f" and endTime eq '{odata_time(until)}'"
        )
        jobs = self._item_backup_jobs(vault, container, window)
        return sorted(jobs, key=lambda job: job.started or since)

    def _item_backup_jobs(self, vault: VaultRef, container: str, odata_filter: str) -> list[ItemBackupJob]:
        wanted = arm_key(container).removeprefix(CONTAINER_PREFIX)
        found = []
        for job in self.jobs(vault, odata_filter):
            properties = job.get("properties") or {}
            if arm_key(str(properties.get("containerName", ""))) != wanted or not job.get("name"):
                continue
            user_triggered = properties.get("isUserTriggered")
            errors = properties.get("errorDetails") or [{}]
            found.append(
                ItemBackupJob(
                    job_id=str(job["name"]),
                    status=str(properties.get("status", "")),
                    started=parse_optional_time(properties.get("startTime")),
                    user_triggered=user_triggered if isinstance(user_triggered, bool) else None,
                    error_code=str(errors[0].get("errorCode") or "") or None,
                )
            )
        return found

    def job_status(self, vault: VaultRef, job_id: str) -> tuple[str, str | None]:
        """(status, first error code) of one backup job."""
        client = self._client_for(vault.subscription_id)
        try:
            job = _raw(client.job_details.get(vault.name, vault.resource_group, job_id))
        except AzureError as exc:
            raise AzureCallError.from_sdk("read backup job", exc) from exc
        properties = job.get("properties") or {}
        errors = properties.get("errorDetails") or []
        return str(properties.get("status", "")), (str(errors[0].get("errorCode")) if errors else None)

    def trigger_backup(self, vault: VaultRef, container: str, item: str, expiry: datetime) -> TriggeredBackup:
        """POST …/backup, then read backupOperations/{op} for the job id (azure-facts §3), unless the
        constructor said not to (the job id is then None).

        Raises AnswerLost when the POST went out and its answer did not come back."""
        client = self._client_for(vault.subscription_id)
        request = BackupRequestResource(
            properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=expiry)
        )
        try:
            headers: MutableMapping[str, str] = cast(Any, client.backups.trigger)(
                vault.name,
                vault.resource_group,
                FABRIC,
                container,
                item,
                request,
                cls=lambda pipeline_response, _body, _headers: response_headers(pipeline_response),
            )
        except ServiceResponseError as exc:
            raise AnswerLost.from_sdk("trigger backup", exc) from exc
        except AzureError as exc:
            raise AzureCallError.from_sdk("trigger backup", exc) from exc
        operation = operation_id(headers, "trigger backup")
        if not self._read_triggered_job_id:
            return TriggeredBackup(operation, None)
        return TriggeredBackup(operation, self.wait_for_job_id(vault, operation, retry_after_hint_s(headers)))

    def wait_for_job_id(self, vault: VaultRef, operation_id: str, retry_after_s: float) -> str | None:
        """Read the operation until it reports a job; None when it is still running at the poll timeout."""
        client = self._client_for(vault.subscription_id)
        deadline = time.monotonic() + self._poll_timeout_s
        while True:
            try:
                status = cast(
                    dict[str, Any],
                    client.backup_operation_statuses.get(
                        vault.name, vault.resource_group, operation_id, cls=_wire_json
                    ),
                )
            except AzureError as exc:
                raise AzureCallError.from_sdk("read backup operation", exc) from exc
            if status.get("status") == "Succeeded":
                return str((status.get("properties") or {}).get("jobId") or "") or None
            if status.get("status") == "Failed":
                error = status.get("error") or {}
                raise AzureCallError(
                    "backup operation",
                    str(error.get("code", "OperationFailed")),
                    str(error.get("message", "the backup operation failed")),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sleep(min(poll_delay_s(retry_after_s, self._poll_interval_s), remaining))


def odata_time(moment: datetime) -> str:
    """A job list filter's time, as the az CLI sends it (`2023-12-21 05:39:46 AM`, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %I:%M:%S %p")


def last_segment(url: str) -> str:
    """The operation id at the end of a Location or Azure-AsyncOperation URL."""
    return str(urlparse(url).path).rstrip("/").rsplit("/", 1)[-1]


def response_headers(pipeline_response: Any) -> MutableMapping[str, str]:
    """An answer's headers in azure-core's case-insensitive mapping, for reading after the call.

    Header names are case-insensitive (RFC 9110 §5.1) and lower-case over HTTP/2 (RFC 9113 §8.2.1),
    as in the azure-cli recordings: a plain `dict` copy would miss `location` when asked for
    `Location`.
    """
    return case_insensitive_dict(pipeline_response.http_response.headers)


def operation_id(headers: Mapping[str, str], action: str) -> str:
    """The id of the operation a 202 answer started, from its Azure-AsyncOperation or Location URL.

    `headers` must compare names case-insensitively (`response_headers`)."""
    for name in ("Azure-AsyncOperation", "Location"):
        url = headers.get(name)
        if url:
            return last_segment(url)
    raise AzureCallError(
        action,
        "MissingOperationHeader",
        "the service answered 202 with neither Azure-AsyncOperation nor Location",
    )


def retry_after_hint_s(headers: Mapping[str, str]) -> float:
    """A 202's Retry-After in seconds (0 when absent or not a number), for `poll_delay_s`."""
    try:
        return float(headers.get("Retry-After") or 0)
    except ValueError:
        return 0.0
