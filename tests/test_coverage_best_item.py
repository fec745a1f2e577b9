"""Which item a VM protected twice is judged by (flows/coverage.py): an active one before one whose
protection was stopped or soft-deleted, whatever their recovery points; the inventory is given as the
bulk read returns it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backupwarden.adapters.azure.protection_inventory import ItemRecord, ProtectionInventory
from backupwarden.domain.protection_states import ProtectedItemFacts, StateRules, VmFacts, VmState
from backupwarden.flows.coverage import Coverage

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
SUB = "11111111-1111-4111-8111-111111111111"
VM_ID = f"/subscriptions/{SUB}/resourcegroups/rg-a/providers/microsoft.compute/virtualmachines/web-1"


class GivenInventory:
    def __init__(self, inventory: ProtectionInventory) -> None:
        self.inventory = inventory

    def read(self, subscriptions: list[str]) -> ProtectionInventory:
        return self.inventory


def item(
    vault: str, state: str, recovery_point_age: timedelta, *, deferred_delete: bool = False
) -> ItemRecord:
    facts = ProtectedItemFacts(
        vault_id=f"/subscriptions/{SUB}/resourcegroups/rg-v/providers/microsoft.recoveryservices/vaults/{vault}",
        protection_state=state,
        last_recovery_point=NOW - recovery_point_age,
        protected_since=NOW - timedelta(days=30),
        is_scheduled_for_deferred_delete=deferred_delete,
    )
    return ItemRecord(VM_ID, "web-1", SUB, "westeurope", facts, ())


@pytest.mark.parametrize(
    "inactive",
    [
        item("old", "SoftDeleted", timedelta(hours=1)),  # the newer API's spelling
        item("old", "ProtectionStopped", timedelta(hours=1), deferred_delete=True),
        item("old", "ProtectionStopped", timedelta(hours=1)),
    ],
    ids=["soft-deleted", "deferred-delete", "stopped"],
)
def test_an_active_item_wins_over_an_inactive_one_with_a_newer_recovery_point(inactive: ItemRecord) -> None:
    vm = VmFacts(VM_ID, "web-1", SUB, "westeurope", "rg-a", created_at=NOW - timedelta(days=60))
    active = item("new", "Protected", timedelta(days=3))
    inventory = ProtectionInventory(vms=[vm], items=[inactive, active])

    scan = Coverage(
        GivenInventory(inventory), lambda: [SUB], StateRules(timedelta(hours=1)), now=lambda: NOW
    ).run()

    (judged,) = scan.classifications
    assert judged.state is VmState.STALE
    assert judged.vault_id.endswith("/vaults/new")
