"""The new-VM worker: enable protection of one VM in the right vault, then start its first backup.

The service's own state (VM, backupStatus, protected item) is the truth; the ledger is the guard:
at most one protection PUT and one initial backup per VM, whatever the events' duplicates,
redeliveries and order, and however many workers race on the same VM.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.inventory import Inventory
from backupwarden.adapters.azure.protection import Protection, item_names
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import (
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    Ledger,
    LedgerError,
    LedgerStatus,
)
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.new_vm_rules import decide_new_vm
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import utc_now
from backupwarden.domain.vault_selection import MappingRule, VmFacts, choose_vault
from backupwarden.flows.backup_now import LEDGER_ACTION as BACKUP_LEDGER_ACTION
from backupwarden.flows.backup_now import (
    BackupTarget,
    LedgerGuard,
    backup_now,
    guarded_action,
)
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.run_report import action_outcome

logger = logging.getLogger(__name__)

ACTION = "enable_protection"
ENQUEUED_ACTION = "new_vm_enqueued"  # a VM write taken in: the outcome of its ACTION must follow
LEDGER_ACTION = "protect"
PROTECT_ATTEMPTS = 3  # protection PUTs per VM and day
TRIGGERED_BY = "NewVm"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransientFailure(Exception):
    """A step failed in a way a later attempt may fix; the queue redelivers the item."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True)
class ProtectConfig:
    rules: tuple[MappingRule, ...]
    daily_budget: int
    recovery_point_expiry: timedelta
    dry_run: bool = False
    max_provisioning_waits: int = 20


@dataclass(frozen=True)
class ProtectTarget:
    """A VM to protect: its id, and its resource group and name, which key its backup item."""

    vm_id: str
    resource_group: str
    vm_name: str


@dataclass(frozen=True)
class ProtectResult:
    result: Result  # PROTECTED, REQUEUED, SKIPPED or FAILED
    reason: str
    job_id: str | None = None
    error: AzureCallError | None = None  # set only when the initial backup failed on an Azure call
    backup_started: bool = False  # this step's "Backup now" was taken (its job id may be unknown yet)


class ProtectStep:
    """Enable protection of a VM in a chosen vault and policy under the ledger, then start its first
    backup through `backup_now`: the step every flow that enrols a VM takes (the new-VM worker, the
    reconciler), so the ledger keeps both to one protection and the daily backup budget across flows.

    Raises the AzureCallError of a failed protection call (its claim settled failed) and LedgerError."""

    def __init__(
        self,
        protection: Protection,
        recovery: RecoveryServices,
        ledger: Ledger,
        *,
        daily_budget: int,
        recovery_point_expiry: timedelta,
        triggered_by: str,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._protection = protection
        self._recovery = recovery
        self._ledger = ledger
        self._daily_budget = daily_budget
        self._recovery_point_expiry = recovery_point_expiry
        self._triggered_by = triggered_by
        self._now = now

    def protect(
        self, target: ProtectTarget, vault: VaultRef, policy: str, where: str, run_id: str
    ) -> ProtectResult:
        """`where`: the vault and policy chosen and why, for the reason."""
        guard = LedgerGuard(
            target.vm_id, LEDGER_ACTION, self._now().date(), run_id, PROTECT_ATTEMPTS, self._triggered_by
        )
        try:
            enabled = guarded_action(
                self._ledger,
                guard,
                lambda: self._protection.enable(
                    vault, target.vm_id, target.resource_group, target.vm_name, policy
                ),
            )
        except AlreadyClaimed as exc:
            if exc.reason == "in_progress":
                # the holder may have died before its PUT landed: look again later rather than drop the VM
                return ProtectResult(
                    Result.REQUEUED, "another worker is protecting this VM: checking again later"
                )
            return ProtectResult(Result.SKIPPED, f"another worker is protecting this VM ({exc.reason})")
        except BudgetExhausted as exc:
            return ProtectResult(Result.FAILED, f"gave up enabling protection: {exc}")
        configured = f"protected in {where}, ConfigureBackup job {enabled.job_id or enabled.operation_id}"
        return self.initial_backup(target, vault, run_id, configured)

    def initial_backup(
        self,
        target: ProtectTarget,
        vault: VaultRef,
        run_id: str,
        done_so_far: str,
        *,
        abandoned: Claim | None = None,
        abandoned_at: datetime | None = None,
    ) -> ProtectResult:
        """`abandoned`: the backup claim an earlier delivery of this run took at `abandoned_at` and died
        holding, carried on as that delivery's attempt (it may have sent the trigger)."""
        now = self._now()
        container, item_name = item_names(target.resource_group, target.vm_name)
        result = backup_now(
            self._ledger,
            self._recovery,
            BackupTarget(target.vm_id, vault, container, item_name),
            run_id=run_id,
            now=now,
            daily_budget=self._daily_budget,
            expiry=now + self._recovery_point_expiry,
            triggered_by=self._triggered_by,
            claim=abandoned,
            earlier_attempt_at=abandoned_at,
        )
        reason = f"{done_so_far}; initial backup: {result.reason}"
        if result.result is Result.FAILED and result.error is not None:
            return ProtectResult(Result.FAILED, reason, error=result.error)
        # the VM is protected whether this backup started or the ledger held it back
        started = result.result is Result.TRIGGERED
        return ProtectResult(Result.PROTECTED, reason, job_id=result.job_id, backup_started=started)


class ProtectVm:
    def __init__(
        self,
        inventory: Inventory,
        protection: Protection,
        recovery: RecoveryServices,
        ledger: Ledger,
        config: ProtectConfig,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._inventory = inventory
        self._protection = protection
        self._ledger = ledger
        self._config = config
        self._now = now
        self._step = ProtectStep(
            protection,
            recovery,
            ledger,
            daily_budget=config.daily_budget,
            recovery_point_expiry=config.recovery_point_expiry,
            triggered_by=TRIGGERED_BY,
            now=now,
        )

    def handle(self, item: NewVmWorkItem, run_id: str | None = None, *, redelivered: bool = False) -> Outcome:
        """One VM to its outcome. Raises TransientFailure when a retry may succeed.

        `run_id`: the same for every delivery of one message, so a redelivery finds what an earlier
        delivery of it did (`redelivered`: one may have died after acting, before its outcome was
        recorded) and states it again under the same record."""
        run_id = run_id or str(uuid.uuid4())
        try:
            outcome = self._handle(item, run_id, redelivered)
        except AzureCallError as exc:
            reason = f"{exc.step} failed"
            outcome = action_outcome(run_id, item.vm_id, "", ACTION, Result.FAILED, reason, error=exc)
            if _transient(exc):
                raise TransientFailure(outcome) from exc
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            raise TransientFailure(
                action_outcome(run_id, item.vm_id, "", ACTION, Result.FAILED, "ledger failed", error=error)
            ) from exc
        logger.info("new VM outcome", extra=outcome.to_dict())
        return outcome

    def _handle(self, item: NewVmWorkItem, run_id: str, redelivered: bool) -> Outcome:
        vm = self._inventory.vm(item.subscription_id, item.resource_group, item.vm_name)
        status = (
            self._protection.status(item.subscription_id, vm.location, item.vm_id)
            if vm and _ready(vm)
            else None
        )
        decision = decide_new_vm(
            exists=vm is not None,
            provisioning_state=vm.provisioning_state if vm else "",
            protected=bool(status and status.protected),
            protected_by=status.vault_id if status else None,
            tags=vm.tags if vm else {},
            provisioning_waits=item.provisioning_waits,
            max_provisioning_waits=self._config.max_provisioning_waits,
        )
        vault_id = (status.vault_id or "") if status else ""
        if decision.result is Result.ALREADY_PROTECTED and self._protected_by_us_today(item):
            return self._resume(item, VaultRef.parse(vault_id), run_id, redelivered)
        if not decision.proceed or vm is None:
            result = decision.result or Result.SKIPPED
            return action_outcome(run_id, item.vm_id, vault_id, ACTION, result, decision.reason)
        facts = VmFacts(item.vm_id, item.subscription_id, vm.location, vm.tags)
        choice = choose_vault(facts, self._inventory.vaults(item.subscription_id), list(self._config.rules))
        if choice.vault is None:
            return action_outcome(run_id, item.vm_id, "", ACTION, Result.NO_VAULT, choice.reason)
        vault = VaultRef.parse(choice.vault.vault_id)
        where = f"vault {vault.name}, policy {choice.policy} ({choice.reason})"
        if self._config.dry_run:
            reason = f"would protect in {where}"
            return action_outcome(run_id, item.vm_id, arm_key(vault.id), ACTION, Result.DRY_RUN, reason)
        return self._protect(item, vault, choice.policy, where, run_id)

    def _protect(self, item: NewVmWorkItem, vault: VaultRef, policy: str, where: str, run_id: str) -> Outcome:
        done = self._step.protect(_target(item), vault, policy, where, run_id)
        return self._outcome(item, vault, run_id, done)

    def _initial_backup(
        self,
        item: NewVmWorkItem,
        vault: VaultRef,
        run_id: str,
        done_so_far: str,
        *,
        abandoned: Claim | None = None,
        abandoned_at: datetime | None = None,
    ) -> Outcome:
        done = self._step.initial_backup(
            _target(item), vault, run_id, done_so_far, abandoned=abandoned, abandoned_at=abandoned_at
        )
        return self._outcome(item, vault, run_id, done)

    def _outcome(self, item: NewVmWorkItem, vault: VaultRef, run_id: str, done: ProtectResult) -> Outcome:
        outcome = action_outcome(
            run_id,
            item.vm_id,
            arm_key(vault.id),
            ACTION,
            done.result,
            done.reason,
            error=done.error,
            job_id=done.job_id,
        )
        if done.error is not None and _transient(done.error):
            # the ledger has the backup FAILED: a redelivery resumes here, under the daily budget
            raise TransientFailure(outcome)
        return outcome

    def _resume(self, item: NewVmWorkItem, vault: VaultRef, run_id: str, redelivered: bool) -> Outcome:
        """Protected by an earlier run of ours today: make sure its initial backup was triggered.

        The initial backup of an earlier delivery of this very run (this message) is that delivery's
        decision, stated again: it may have died before recording it, and the record this one writes
        replaces its record (same run, VM and action)."""
        done_so_far = "protected earlier today by backupwarden"
        backup = self._ledger.record(item.vm_id, BACKUP_LEDGER_ACTION, self._now().date())
        if backup is not None and backup.run_id == run_id:
            if backup.status is LedgerStatus.COMPLETED:
                job = backup.job_id or "unknown yet"
                reason = f"{done_so_far}; initial backup: an earlier delivery triggered it; backup job {job}"
                vault_id = arm_key(vault.id)
                job_id = backup.job_id or None
                return action_outcome(
                    run_id, item.vm_id, vault_id, ACTION, Result.PROTECTED, reason, job_id=job_id
                )
            if backup.status is LedgerStatus.IN_PROGRESS and redelivered:
                return self._initial_backup(
                    item, vault, run_id, done_so_far, abandoned=backup.as_claim(), abandoned_at=backup.updated
                )
        outcome = self._initial_backup(item, vault, run_id, done_so_far)
        if outcome.result is Result.PROTECTED and outcome.job_id is None:
            # the ledger shows the initial backup already handled: a duplicate or redelivered event
            return replace(outcome, result=Result.ALREADY_PROTECTED)
        return outcome

    def _protected_by_us_today(self, item: NewVmWorkItem) -> bool:
        return self._ledger.record(item.vm_id, LEDGER_ACTION, self._now().date()) is not None


def enqueued_record(item: NewVmWorkItem) -> Outcome:
    """The record of a VM write the Event Grid trigger put on the queue, keyed by its event: with the
    worker's outcome records, what the "flow silent" alert compares (docs/alerts.md)."""
    reason = f"event {item.event_id} enqueued for protection"
    return action_outcome(item.event_id, item.vm_id, "", ENQUEUED_ACTION, Result.ENQUEUED, reason)


def _target(item: NewVmWorkItem) -> ProtectTarget:
    return ProtectTarget(item.vm_id, item.resource_group, item.vm_name)


def _transient(error: AzureCallError) -> bool:
    return error.status is None or error.status in TRANSIENT_STATUSES


def _ready(vm: Any) -> bool:
    return str(vm.provisioning_state).lower() == "succeeded"
