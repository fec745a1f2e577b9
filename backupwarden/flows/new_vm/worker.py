"""The new-VM worker: enable protection of one VM in the right vault, then start its first backup.

The service's own state (VM, backupStatus, protected item) is the truth; the ledger is the guard:
at most one protection PUT and one initial backup per VM, whatever the events' duplicates,
redeliveries and order, and however many workers race on the same VM.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.inventory import Inventory
from backupwarden.adapters.azure.protection import Protection, item_names
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import AlreadyClaimed, BudgetExhausted, Ledger, LedgerError
from backupwarden.domain.new_vm_rules import decide_new_vm
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.vault_selection import MappingRule, VmFacts, choose_vault
from backupwarden.domain.vm_events import VmWritten, parse_vm_id
from backupwarden.flows.backup_now import BackupTarget, backup_now
from backupwarden.flows.run_report import action_outcome

logger = logging.getLogger(__name__)

ACTION = "enable_protection"
LEDGER_ACTION = "protect"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class InvalidWorkItem(ValueError):
    """A queue message that is not a work item: reported, never retried."""


class TransientFailure(Exception):
    """A step failed in a way a later attempt may fix; the queue redelivers the item."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True)
class WorkItem:
    vm_id: str
    subscription_id: str
    resource_group: str
    vm_name: str
    event_id: str
    correlation_id: str = ""
    provisioning_waits: int = 0

    @classmethod
    def from_event(cls, event: VmWritten) -> WorkItem:
        return cls(
            event.vm_id,
            event.subscription_id,
            event.resource_group,
            event.vm_name,
            event.event_id,
            event.correlation_id,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkItem:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidWorkItem(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidWorkItem("a work item must be a JSON object")
        try:
            item = cls(**{key: raw[key] for key in raw if key in cls.__dataclass_fields__})
        except TypeError as exc:
            raise InvalidWorkItem(f"missing fields: {exc}") from exc
        strings = ("vm_id", "subscription_id", "resource_group", "vm_name", "event_id", "correlation_id")
        if any(not isinstance(getattr(item, name), str) for name in strings):
            raise InvalidWorkItem(
                "vm_id, subscription_id, resource_group, vm_name and event_id must be strings"
            )
        waits = item.provisioning_waits
        if not isinstance(waits, int) or isinstance(waits, bool) or waits < 0:
            raise InvalidWorkItem("provisioning_waits must be a non-negative integer")
        parts = parse_vm_id(item.vm_id)
        named = (item.subscription_id, item.resource_group, item.vm_name)
        if parts is None or [p.lower() for p in parts] != [n.lower() for n in named]:
            # the worker reads the VM by its parts and protects it by its id: they must agree
            raise InvalidWorkItem(f"vm_id {item.vm_id[:200]!r} is not the id of the VM the item names")
        return item

    def waited_once_more(self) -> WorkItem:
        return replace(self, provisioning_waits=self.provisioning_waits + 1)


@dataclass(frozen=True)
class ProtectConfig:
    rules: tuple[MappingRule, ...]
    daily_budget: int
    recovery_point_expiry: timedelta
    dry_run: bool = False
    max_provisioning_waits: int = 20


class ProtectVm:
    def __init__(
        self,
        inventory: Inventory,
        protection: Protection,
        recovery: RecoveryServices,
        ledger: Ledger,
        config: ProtectConfig,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._inventory = inventory
        self._protection = protection
        self._recovery = recovery
        self._ledger = ledger
        self._config = config
        self._now = now

    def handle(self, item: WorkItem, run_id: str | None = None) -> Outcome:
        """One VM to its outcome. Raises TransientFailure when a retry may succeed."""
        run_id = run_id or str(uuid.uuid4())
        try:
            outcome = self._handle(item, run_id)
        except AzureCallError as exc:
            outcome = _outcome(run_id, item.vm_id, "", Result.FAILED, f"{exc.step} failed", exc)
            if _transient(exc):
                raise TransientFailure(outcome) from exc
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            raise TransientFailure(
                _outcome(run_id, item.vm_id, "", Result.FAILED, "ledger failed", error)
            ) from exc
        logger.info("new VM outcome", extra=outcome.to_dict())
        return outcome

    def _handle(self, item: WorkItem, run_id: str) -> Outcome:
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
            return self._resume(item, VaultRef.parse(vault_id), run_id)
        if not decision.proceed or vm is None:
            return _outcome(run_id, item.vm_id, vault_id, decision.result or Result.SKIPPED, decision.reason)
        facts = VmFacts(item.vm_id, item.subscription_id, vm.location, vm.tags)
        choice = choose_vault(facts, self._inventory.vaults(item.subscription_id), list(self._config.rules))
        if choice.vault is None:
            return _outcome(run_id, item.vm_id, "", Result.NO_VAULT, choice.reason)
        vault = VaultRef.parse(choice.vault.vault_id)
        where = f"vault {vault.name}, policy {choice.policy} ({choice.reason})"
        if self._config.dry_run:
            return _outcome(run_id, item.vm_id, vault.id.lower(), Result.DRY_RUN, f"would protect in {where}")
        return self._protect(item, vault, choice.policy, where, run_id)

    def _protect(self, item: WorkItem, vault: VaultRef, policy: str, where: str, run_id: str) -> Outcome:
        now = self._now()
        try:
            claim = self._ledger.claim(item.vm_id, LEDGER_ACTION, now.date(), run_id, max_attempts=3)
        except AlreadyClaimed as exc:
            if exc.reason == "in_progress":
                # the holder may have died before its PUT landed: look again later rather than drop the VM
                return _outcome(
                    run_id,
                    item.vm_id,
                    vault.id.lower(),
                    Result.REQUEUED,
                    "another worker is protecting this VM: checking again later",
                )
            return _outcome(
                run_id,
                item.vm_id,
                vault.id.lower(),
                Result.SKIPPED,
                f"another worker is protecting this VM ({exc.reason})",
            )
        except BudgetExhausted as exc:
            return _outcome(
                run_id, item.vm_id, vault.id.lower(), Result.FAILED, f"gave up enabling protection: {exc}"
            )
        try:
            enabled = self._protection.enable(vault, item.vm_id, item.resource_group, item.vm_name, policy)
        except AzureCallError as exc:
            self._ledger.fail(claim, exc.code)
            raise
        self._ledger.complete(claim, enabled.job_id or "", enabled.operation_id, triggered_by="NewVm")
        configured = f"protected in {where}, ConfigureBackup job {enabled.job_id or enabled.operation_id}"
        return self._initial_backup(item, vault, run_id, configured)

    def _initial_backup(self, item: WorkItem, vault: VaultRef, run_id: str, done_so_far: str) -> Outcome:
        now = self._now()
        container, item_name = item_names(item.resource_group, item.vm_name)
        result = backup_now(
            self._ledger,
            self._recovery,
            BackupTarget(item.vm_id, vault, container, item_name),
            run_id=run_id,
            now=now,
            daily_budget=self._config.daily_budget,
            expiry=now + self._config.recovery_point_expiry,
            triggered_by="NewVm",
        )
        if result.result is Result.FAILED and result.error is not None:
            failed = _outcome(
                run_id,
                item.vm_id,
                vault.id.lower(),
                Result.FAILED,
                f"{done_so_far}; initial backup: {result.reason}",
                result.error,
            )
            if _transient(result.error):
                # the ledger has the backup FAILED: a redelivery resumes here, under the daily budget
                raise TransientFailure(failed)
            return failed
        return _outcome(
            run_id,
            item.vm_id,
            vault.id.lower(),
            Result.PROTECTED,
            f"{done_so_far}; initial backup: {result.reason}",
            job_id=result.job_id,
        )

    def _resume(self, item: WorkItem, vault: VaultRef, run_id: str) -> Outcome:
        """Protected by an earlier run of ours today: make sure its initial backup was triggered."""
        outcome = self._initial_backup(item, vault, run_id, "protected earlier today by backupwarden")
        if outcome.result is Result.PROTECTED and outcome.job_id is None:
            # the ledger shows the initial backup already handled: a duplicate or redelivered event
            return replace(outcome, result=Result.ALREADY_PROTECTED)
        return outcome

    def _protected_by_us_today(self, item: WorkItem) -> bool:
        return self._ledger.record(item.vm_id, LEDGER_ACTION, self._now().date()) is not None


def _transient(error: AzureCallError) -> bool:
    return error.status is None or error.status in TRANSIENT_STATUSES


def _ready(vm: Any) -> bool:
    return str(vm.provisioning_state).lower() == "succeeded"


def _outcome(
    run_id: str,
    vm_id: str,
    vault_id: str,
    result: Result,
    reason: str,
    error: AzureCallError | None = None,
    job_id: str | None = None,
) -> Outcome:
    return action_outcome(run_id, vm_id, vault_id, ACTION, result, reason, error=error, job_id=job_id)
