"""Realistic outcome records for bench/outcomes.py, built with the project's own row builders.

A day of a large estate: job outcomes of scheduled backups plus the sweep's and the new-VM flow's
jobs, and the automation's decisions. Field sizes follow what Azure and backupwarden produce:
lower-case ARM ids of 120-170 characters, GUID job ids, error messages and recommendations of
100-600 characters on failures (one failure in twenty carries a multi-KB message, as extension
failures do), decision reasons of 20-80 characters. Seeded: the same arguments give the same records.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backupwarden.domain.log_records import Attribution, FinishedJob, action_row, job_outcome_row
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result

REGIONS = ("westeurope", "northeurope", "swedencentral", "eastus2")
WORKLOADS = ("app", "web", "sql", "batch", "dc", "files", "etl", "api")
FAILURES = (  # (error code, message, recommendation): what the service returns for AzureIaasVM jobs
    (
        "UserErrorGuestAgentStatusUnavailable",
        "VM Agent unable to communicate with Azure Backup. The VM agent on {vm} is not responding or "
        "is outdated; the last heartbeat was received more than 4 hours before the snapshot started.",
        "Ensure the VM agent is installed, running and up to date, and that the VM has outbound "
        "connectivity to the Azure Backup service and to 168.63.129.16 on ports 80 and 32526. "
        "See https://aka.ms/backup-vm-agent-troubleshoot for details.",
    ),
    (
        "ExtensionSnapshotFailedNoNetwork",
        "Snapshot operation failed due to no network connectivity on the virtual machine {vm}.",
        "Ensure the VM has network connectivity and that the backup extension can reach Azure "
        "Storage; check NSG rules, user-defined routes and proxy settings for the VM's subnet.",
    ),
    (
        "UserErrorVmNotInDesirableState",
        "VM is not in a state that allows backups. The VM {vm} is in the 'Failed' provisioning state.",
        "Start the VM or bring it to the 'Succeeded' provisioning state, then retry the backup.",
    ),
    (
        "BackupOperationFailedV2",
        "Backup failed with an internal error. Request {request}: the snapshot of disk osdisk-{vm} "
        "could not be completed within the allotted time.",
        "Retry the operation in a few minutes. If the problem persists, contact Microsoft support.",
    ),
)


@dataclass(frozen=True)
class Estate:
    """The VMs and vaults the records talk about, as lower-case ARM ids."""

    subscriptions: tuple[str, ...]
    vms_per_subscription: int

    @property
    def vm_count(self) -> int:
        return len(self.subscriptions) * self.vms_per_subscription

    def vm(self, index: int) -> tuple[str, str, str, str, str]:
        """(subscription id, region, VM name, VM id, vault id) of VM number `index`."""
        subscription = self.subscriptions[index % len(self.subscriptions)]
        number = index // len(self.subscriptions)
        region = REGIONS[number % len(REGIONS)]
        short = region[:3]
        workload = WORKLOADS[number % len(WORKLOADS)]
        group = f"rg-{workload}-{short}-prod-{number % 97:03d}"
        name = f"vm-{workload}-{short}-prod-{number:05d}"
        vm_id = (
            f"/subscriptions/{subscription}/resourcegroups/{group}"
            f"/providers/microsoft.compute/virtualmachines/{name}"
        )
        vault_id = (
            f"/subscriptions/{subscription}/resourcegroups/rg-backup-{short}-prod"
            f"/providers/microsoft.recoveryservices/vaults/rsv-backup-{short}-prod"
        )
        return subscription, region, name, vm_id, vault_id


def seeded_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def outcome_records(
    count: int, job_share: float, start: datetime, end: datetime, seed: int = 7
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` (stream, row) pairs in TimeGenerated order between `start` and `end`."""
    rng = random.Random(seed)
    estate = Estate(tuple(seeded_uuid(rng) for _ in range(8)), vms_per_subscription=2_500)
    step = (end - start) / max(count, 1)
    decisions = _decisions(rng, estate)
    for index in range(count):
        at = start + step * index + timedelta(microseconds=rng.randrange(1_000_000))
        if rng.random() < job_share:
            yield JOB_OUTCOMES.stream, _job_outcome(rng, estate, at)
        else:
            outcome, source, dry_run = next(decisions)
            yield AUTOMATION_ACTIONS.stream, action_row(outcome, source=source, dry_run=dry_run, at=at)


def _job_outcome(rng: random.Random, estate: Estate, end: datetime) -> dict[str, Any]:
    subscription, region, name, vm_id, vault_id = estate.vm(rng.randrange(estate.vm_count))
    status = rng.choices(("Completed", "CompletedWithWarnings", "Failed", "Cancelled"), (85, 5, 8, 2))[0]
    code = message = recommendation = ""
    if status == "Failed":
        code, message, recommendation = rng.choice(FAILURES)
        message = message.format(vm=name, request=seeded_uuid(rng))
        if rng.random() < 0.05:  # extension failures carry the guest's own log excerpt
            message += " Extension output: " + " ".join(seeded_uuid(rng) for _ in range(rng.randint(40, 120)))
    triggered_by = rng.choices(("Schedule", "Sweep", "NewVm", "Remediation", "Manual"), (80, 10, 6, 3, 1))[0]
    automated = triggered_by in ("Sweep", "NewVm", "Remediation")
    job = FinishedJob(
        job_id=seeded_uuid(rng),
        operation="ConfigureBackup" if triggered_by == "NewVm" and rng.random() < 0.5 else "Backup",
        status=status,
        vm_id=vm_id,
        vm_name=name,
        vault_id=vault_id,
        subscription_id=subscription,
        region=region,
        start_time=end - timedelta(seconds=rng.uniform(300, 7_200)),
        end_time=end,
        error_code=code,
        error_message=message,
        recommendation=recommendation,
    )
    attribution = Attribution(
        triggered_by, seeded_uuid(rng) if automated else "", rng.randint(1, 3) if automated else 0
    )
    return job_outcome_row(job, attribution)


def _decisions(rng: random.Random, estate: Estate) -> Iterator[tuple[Outcome, str, bool]]:
    """Runs of the sweep and the new-VM flow, each deciding once per VM it looks at (unique record ids)."""
    first_vm = 0
    while True:
        sweep = rng.random() < 0.7
        run_id = seeded_uuid(rng)
        source = "Timer" if sweep else rng.choice(("EventGrid", "Queue", "Alert", "Cli"))
        dry_run = rng.random() < 0.05
        size = rng.randint(50, 600) if sweep else rng.randint(1, 20)
        for offset in range(size):
            _, _, _, vm_id, vault_id = estate.vm((first_vm + offset) % estate.vm_count)
            yield _decision(rng, run_id, vm_id, vault_id, sweep), source, dry_run
        first_vm = (first_vm + size) % estate.vm_count


def _decision(rng: random.Random, run_id: str, vm_id: str, vault_id: str, sweep: bool) -> Outcome:
    if sweep:
        result = rng.choices((Result.TRIGGERED, Result.SKIPPED, Result.FAILED), (30, 65, 5))[0]
        reason = {
            Result.TRIGGERED: "initial backup pending since 2026-11-24T21:14Z",
            Result.SKIPPED: rng.choice(
                (
                    "a backup job is already in progress",
                    "not pending: protectionState is Protected",
                    "opted out by tag backupwarden:skip",
                    "per-run cap reached (200 triggers)",
                )
            ),
            Result.FAILED: "backup trigger refused by the service",
        }[result]
        action = "trigger_backup"
    else:
        result = rng.choices((Result.PROTECTED, Result.ALREADY_PROTECTED, Result.NO_VAULT), (80, 15, 5))[0]
        reason = {
            Result.PROTECTED: "unprotected; vault chosen by region and tag backupwarden:policy",
            Result.ALREADY_PROTECTED: "already protected by another vault",
            Result.NO_VAULT: "no vault in the VM's region matches the mapping rules",
        }[result]
        action = "enable_protection"
    job_id = seeded_uuid(rng) if result in (Result.TRIGGERED, Result.PROTECTED) else None
    error_code = "BMSUserErrorNeedsAttention" if result is Result.FAILED else None
    return Outcome(run_id, vm_id, vault_id, action, result, reason, job_id, error_code)
