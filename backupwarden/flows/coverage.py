"""Coverage, read-only: read the scope's protection state in bulk, put every VM (and every item whose
VM is gone) in one state, and count the VMs with a recovery point within their RPO.

Nothing is written anywhere: each classification's action is proposed, not taken (the reconciler
that takes them is later work of issue 17). docs/coverage.md describes the states and the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from backupwarden.adapters.azure.protection_inventory import ItemRecord, ProtectionInventory
from backupwarden.domain.arm_ids import arm_key, resource_group_of
from backupwarden.domain.coverage import CoverageFigure, CoverageReport, coverage
from backupwarden.domain.protection_states import (
    BackupSchedule,
    Classification,
    JobFacts,
    StateRules,
    VmFacts,
    classify,
    is_inactive,
)
from backupwarden.domain.times import iso_z, utc_now


class InventoryReader(Protocol):
    def read(self, subscriptions: list[str]) -> ProtectionInventory: ...


@dataclass(frozen=True)
class ScopeFailure:
    scope: str  # a subscription or vault id
    error: str


@dataclass(frozen=True)
class CoverageScan:
    at: datetime
    classifications: tuple[Classification, ...]  # sorted by subscription, then VM id
    report: CoverageReport
    failures: tuple[ScopeFailure, ...]
    requests: int  # Resource Graph and policy list pages the read took

    @property
    def complete(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso_z(self.at),
            "complete": self.complete,
            "requests": self.requests,
            "totals": {
                "total": _figure_json(self.report.total),
                "by_subscription": [_figure_json(f) for f in self.report.by_subscription],
                "by_region": [_figure_json(f) for f in self.report.by_region],
            },
            "vms": [_classification_json(c) for c in self.classifications],
            "failures": [{"scope": f.scope, "error": f.error} for f in self.failures],
        }


class Coverage:
    def __init__(
        self,
        reader: InventoryReader,
        subscriptions: Callable[[], list[str]],
        rules: StateRules,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._reader = reader
        self._subscriptions = subscriptions
        self._rules = rules
        self._now = now

    def run(self) -> CoverageScan:
        """The scope's coverage now; an AzureCallError when not even the subscriptions can be listed."""
        inventory = self._reader.read(self._subscriptions())
        now = self._now()
        classified = [
            classify(
                vm, item.facts if item else None, schedule=schedule, jobs=jobs, rules=self._rules, now=now
            )
            for vm, item, schedule, jobs in _pairs(inventory)
        ]
        classified.sort(key=lambda c: (c.vm.subscription_id, arm_key(c.vm.id)))
        return CoverageScan(
            at=now,
            classifications=tuple(classified),
            report=coverage(classified),
            failures=tuple(ScopeFailure(scope, str(error)) for scope, error in inventory.failures),
            requests=inventory.requests,
        )


def _pairs(
    inventory: ProtectionInventory,
) -> Iterable[tuple[VmFacts, ItemRecord | None, BackupSchedule | None, tuple[JobFacts, ...]]]:
    """Each VM with its item (if any), the item's schedule and jobs; then each item whose VM is gone.

    A VM protected in two vaults (moved, or protected twice) is judged by its best item: an active
    one before a stopped or soft-deleted one, then the newest recovery point.
    """
    # a VM's first item, and its others apart: most VMs have one, and a list each would cost
    # megabytes at 100,000 VMs
    first_item: dict[str, ItemRecord] = {}
    more_items: dict[str, list[ItemRecord]] = {}
    for record in inventory.items:
        if first_item.setdefault(record.vm_id, record) is not record:
            more_items.setdefault(record.vm_id, []).append(record)
    for vm in inventory.vms:
        key = arm_key(vm.id)
        found = first_item.pop(key, None)
        records = [found, *more_items.pop(key, [])] if found else []
        best = min(records, key=_item_rank, default=None)
        yield vm, best, _schedule_of(best, inventory), best.jobs if best else ()
    for vm_id, found in sorted(first_item.items()):
        for record in (found, *more_items.get(vm_id, [])):
            gone = VmFacts(
                id=vm_id,
                name=record.vm_name,
                subscription_id=record.subscription_id,
                region=record.region,
                resource_group=resource_group_of(vm_id),
                exists=False,
            )
            yield gone, record, _schedule_of(record, inventory), record.jobs


def _item_rank(record: ItemRecord) -> tuple[int, float]:
    facts = record.facts
    newest = facts.last_recovery_point.timestamp() if facts.last_recovery_point else float("-inf")
    return (1 if is_inactive(facts) else 0, -newest)


def _schedule_of(record: ItemRecord | None, inventory: ProtectionInventory) -> BackupSchedule | None:
    return inventory.schedules.get(arm_key(record.facts.policy_id)) if record else None


def _figure_json(figure: CoverageFigure) -> dict[str, Any]:
    percent = figure.percent
    return {
        "scope": figure.scope,
        "in_scope": figure.in_scope,
        "covered": figure.covered,
        "percent": None if percent is None else round(percent, 2),
    }


def _classification_json(c: Classification) -> dict[str, Any]:
    return {
        "vm_id": c.vm.id,
        "vm_name": c.vm.name,
        "subscription_id": c.vm.subscription_id,
        "region": c.vm.region,
        "state": c.state.value,
        "action": c.action.value,
        "reason": c.reason,
        "recommendation": c.recommendation,
        "failure_class": c.failure_class.value if c.failure_class else None,
        "within_rpo": c.within_rpo,
        "hours_without_recovery_point": c.hours_without_recovery_point,
    }
