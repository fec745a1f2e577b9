"""Plain records the domain decides over and reports: candidates, item states, outcomes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from backupwarden.domain.arm_ids import arm_key


class Result(StrEnum):
    TRIGGERED = "triggered"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"
    FAILED = "failed"
    # the new-VM flow's outcomes
    PROTECTED = "protected"
    ALREADY_PROTECTED = "already_protected"
    NO_VAULT = "no_vault"
    VM_GONE = "vm_gone"
    REQUEUED = "requeued"
    # remediation's outcomes
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    # a whole run of a flow (its health record, read by the flow alerts): every piece of work done,
    # some of it failed or left, or the run itself failed (the reason says why)
    COMPLETED = "completed"
    PARTIAL = "partial"
    # a piece of work handed to a queue-driven flow (its outcome record follows when handled)
    ENQUEUED = "enqueued"


SWEEP_RESULTS = (Result.TRIGGERED, Result.SKIPPED, Result.DRY_RUN, Result.FAILED)


@dataclass(frozen=True)
class Candidate:
    """A protected AzureIaasVM item that discovery thinks is still waiting for its first backup."""

    subscription_id: str
    vault_id: str
    container_name: str
    item_name: str
    vm_id: str  # the VM's ARM id, lower-case
    vm_name: str
    configured_at: datetime | None = None  # end of the ConfigureBackup job, when known
    vm_tags: dict[str, str] = field(default_factory=dict)
    job_in_progress: bool = False

    @property
    def key(self) -> str:
        return arm_key(self.vm_id)


@dataclass(frozen=True)
class ItemState:
    """What the Recovery Services API says about the item right now (the verification read)."""

    protection_state: str
    last_backup_status: str
    has_recovery_point: bool
    vm_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerView:
    """What the ledger knows about this VM's backup triggers today, with the last job's live status."""

    attempts_today: int = 0
    last_job_id: str | None = None
    last_job_status: str | None = None  # InProgress, Completed, Failed, ... as the service reports it
    claimed_by_other_run: bool = False
    first_seen: datetime | None = None
    last_failure_code: str | None = None  # why today's last trigger or its job failed


@dataclass(frozen=True)
class Outcome:
    """One decision about one VM, as reported and (later) shipped to Log Analytics."""

    run_id: str
    vm_id: str
    vault_id: str
    action: str
    result: Result
    reason: str
    job_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["result"] = self.result.value
        return data
