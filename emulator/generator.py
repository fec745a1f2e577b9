"""Large synthetic estates: N subscriptions × M vaults × K VMs, a share of them stuck in IRPending."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from emulator.estate import (
    BackupJob,
    BackupPolicy,
    Estate,
    ProtectedItem,
    Subscription,
    Vault,
    VirtualMachine,
)

REGIONS = ("westeurope", "northeurope", "eastus", "westus2", "uksouth")
VAULT_ITEM_LIMIT = 1000  # Azure VMs one vault can protect (azure-facts §2)


def subscription_id(index: int) -> str:
    return str(uuid.UUID(int=0x5EED_0000_0000_0000_0000_0000_0000_0000 + index))


def generate_estate(
    estate: Estate,
    *,
    start: datetime,
    subscriptions: int = 1,
    vaults_per_subscription: int = 1,
    vms_per_vault: int = 100,
    stuck_percent: float = 10.0,
    unprotected_percent: float = 0.0,
    stuck_since_hours: float = 3.0,
    with_history: bool = True,
) -> None:
    """Fill `estate` deterministically: in each vault's VMs, the first `unprotected_percent` % are not
    protected, the next `stuck_percent` % are IRPending (configured `stuck_since_hours` ago), the rest
    Protected. Shares are rounded half up per vault.

    `with_history` adds the completed ConfigureBackup (and, for protected VMs, Backup) job that a real
    item would have; memory benchmarks over 100k VMs can turn it off.
    """
    unprotected_per_vault, stuck_per_vault = _shares_per_vault(
        subscriptions, vaults_per_subscription, vms_per_vault, stuck_percent, unprotected_percent
    )
    for s in range(subscriptions):
        sub = estate.add_subscription(Subscription(subscription_id(s), f"generated-{s:03d}"))
        for v in range(vaults_per_subscription):
            region = REGIONS[v % len(REGIONS)]
            vault = estate.add_vault(
                Vault(sub.subscription_id, f"rg-backup-{v:03d}", f"vault-{s:03d}-{v:03d}", region)
            )
            policy = estate.add_policy(BackupPolicy(vault.id, "DefaultPolicy"))
            for k in range(vms_per_vault):
                vm = estate.add_vm(
                    VirtualMachine(
                        sub.subscription_id,
                        f"rg-app-{v:03d}",
                        f"vm-{s:03d}-{v:03d}-{k:05d}",
                        region,
                        created=start - timedelta(days=30),
                    )
                )
                if k < unprotected_per_vault:
                    continue
                stuck = k < unprotected_per_vault + stuck_per_vault
                configured = start - timedelta(hours=stuck_since_hours if stuck else 24 * 7)
                item = ProtectedItem(
                    vault.id, vm, policy.id, "IRPending" if stuck else "Protected", configured_at=configured
                )
                estate.protected_items[vm.id.lower()] = item
                estate.discovered.setdefault(vault.id.lower(), set()).add(vm.id.lower())
                if not stuck:
                    last = start - timedelta(hours=20)
                    item.last_backup_status, item.last_backup_time, item.last_recovery_point = (
                        "Completed",
                        last,
                        last,
                    )
                if with_history:
                    estate.add_job(
                        BackupJob(
                            vault.id,
                            vm,
                            "ConfigureBackup",
                            configured - timedelta(seconds=35),
                            status="Completed",
                            end_time=configured,
                        )
                    )
                    if not stuck:
                        estate.add_job(
                            BackupJob(
                                vault.id,
                                vm,
                                "Backup",
                                last - timedelta(minutes=40),
                                status="Completed",
                                end_time=last,
                            )
                        )


def _shares_per_vault(
    subscriptions: int,
    vaults_per_subscription: int,
    vms_per_vault: int,
    stuck_percent: float,
    unprotected_percent: float,
) -> tuple[int, int]:
    """(unprotected, stuck) VMs in each vault; ValueError for arguments no real estate could have."""
    counts = {
        "subscriptions": subscriptions,
        "vaults_per_subscription": vaults_per_subscription,
        "vms_per_vault": vms_per_vault,
    }
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be an integer >= 0, not {count!r}")
    if not 0 <= stuck_percent <= 100 or not 0 <= unprotected_percent <= 100 - stuck_percent:
        raise ValueError("stuck_percent and unprotected_percent must be within [0, 100] and add up to <= 100")
    unprotected = _share(vms_per_vault, unprotected_percent)
    stuck = min(_share(vms_per_vault, stuck_percent), vms_per_vault - unprotected)
    if vms_per_vault - unprotected > VAULT_ITEM_LIMIT:
        raise ValueError(
            f"{vms_per_vault - unprotected} protected VMs per vault exceed the service's limit of "
            f"{VAULT_ITEM_LIMIT}; use more vaults_per_subscription"
        )
    return unprotected, stuck


def _share(total: int, percent: float) -> int:
    """`percent` % of `total`, rounded half up (Python's round() would round 2.5 to 2)."""
    return math.floor(total * percent / 100 + 0.5)
