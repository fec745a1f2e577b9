"""Large synthetic estates: N subscriptions × M vaults × K VMs, a share of them stuck in IRPending and,
on request, shares in the other protection states (stale, failing, stopped, orphaned)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
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
# The states `state_percents` may ask for, in the order they take each vault's VMs (after the
# unprotected and the stuck ones): what each item looks like is in `_apply_state`.
STATES = ("stale", "failing_retryable", "failing_escalate", "stopped", "orphaned")
RETRYABLE_FAILURE = "BackUpOperationFailed"  # a transient service error: a retry can fix it
ESCALATE_FAILURE = "UserErrorRequestDisallowedByPolicy"  # a deny policy: a retry cannot fix it


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
    state_percents: Mapping[str, float] | None = None,
) -> None:
    """Fill `estate` deterministically: in each vault's VMs, the first `unprotected_percent` % are not
    protected, the next `stuck_percent` % are IRPending (configured `stuck_since_hours` ago), then
    each of `state_percents` in STATES order, the rest Protected with a recovery point 20 hours old.
    Shares are rounded half up per vault.

    `state_percents` (state -> percent): `stale` (Protected, newest recovery point 3 days old under a
    daily policy), `failing_retryable` / `failing_escalate` (ProtectionError, a failed Backup job 2
    hours ago with RETRYABLE_FAILURE / ESCALATE_FAILURE), `stopped` (ProtectionStopped),
    `orphaned` (a Protected item whose VM was deleted).

    `with_history` adds the completed ConfigureBackup (and, for protected VMs, Backup) job that a real
    item would have; memory benchmarks over 100k VMs can turn it off. Failed jobs are always added:
    they are what makes an item failing.
    """
    unprotected_per_vault, stuck_per_vault = _shares_per_vault(
        subscriptions, vaults_per_subscription, vms_per_vault, stuck_percent, unprotected_percent
    )
    layout = _state_layout(vms_per_vault, unprotected_per_vault + stuck_per_vault, state_percents or {})
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
                state = "stuck" if stuck else _state_at(layout, k)
                configured = start - timedelta(hours=stuck_since_hours if stuck else 24 * 7)
                item = ProtectedItem(
                    vault.id, vm, policy.id, "IRPending" if stuck else "Protected", configured_at=configured
                )
                estate.protected_items[vm.id.lower()] = item
                estate.discovered.setdefault(vault.id.lower(), set()).add(vm.id.lower())
                last = start - timedelta(hours=20)
                if not stuck:
                    item.last_backup_status, item.last_backup_time, item.last_recovery_point = (
                        "Completed",
                        last,
                        last,
                    )
                failed = _apply_state(estate, item, state, start)
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
                                item.last_backup_time - timedelta(minutes=40),
                                status="Completed",
                                end_time=item.last_backup_time,
                            )
                        )
                if failed:
                    failed_at = start - timedelta(hours=2)
                    estate.add_job(
                        BackupJob(
                            vault.id,
                            vm,
                            "Backup",
                            failed_at - timedelta(minutes=10),
                            status="Failed",
                            end_time=failed_at,
                            error_code=failed,
                            error_message=f"Backup failed with {failed}.",
                        )
                    )


def _state_layout(vms_per_vault: int, taken: int, percents: Mapping[str, float]) -> list[tuple[int, str]]:
    """(first index past the state's VMs, state) for each of STATES, in order, from index `taken`."""
    unknown = sorted(set(percents) - set(STATES))
    if unknown:
        raise ValueError(f"state_percents: unknown states {unknown}; known: {list(STATES)}")
    layout: list[tuple[int, str]] = []
    end = taken
    for state in STATES:
        percent = percents.get(state, 0.0)
        if isinstance(percent, bool) or not isinstance(percent, int | float) or percent < 0:
            raise ValueError(f"state_percents.{state} must be a number >= 0, not {percent!r}")
        end += _share(vms_per_vault, percent)
        layout.append((end, state))
    if end > vms_per_vault:
        raise ValueError("the unprotected, stuck and state_percents shares add up to more than 100 %")
    return layout


def _state_at(layout: list[tuple[int, str]], index: int) -> str:
    return next((state for end, state in layout if index < end), "protected")


def _apply_state(estate: Estate, item: ProtectedItem, state: str, start: datetime) -> str:
    """Make a Protected item `state`; the error code of the failed backup it needs, or ""."""
    older = start - timedelta(days=3)
    if state == "stale":
        item.last_backup_time = item.last_recovery_point = older
    elif state in ("failing_retryable", "failing_escalate"):
        item.protection_state, item.last_backup_status = "ProtectionError", "Failed"
        item.last_backup_time = item.last_recovery_point = older
        return RETRYABLE_FAILURE if state == "failing_retryable" else ESCALATE_FAILURE
    elif state == "stopped":
        item.protection_state = "ProtectionStopped"
        item.last_backup_time = item.last_recovery_point = older
    elif state == "orphaned":
        del estate.vms[item.vm.id.lower()]  # deleted; its item stays, as in Azure
    return ""


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
