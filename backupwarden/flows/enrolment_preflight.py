"""Enrolling an existing VM, before anything is written: where it would go (the vault and policy,
chosen as for a new VM: tags, mapping rules, the only vault in the region) and what pre-flight says
about it (domain/preflight.py: the policy's type fits the VM's security and disk types, the vault has
room, Azure Policy's checkPolicyRestrictions denies nothing the first backup creates; the VM agent
only warns). The reconciler acts on the answer (flows/reconcile.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from backupwarden.adapters.azure.enrolment_reads import EnrolmentReads
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.policy_restrictions import PolicyRestrictionsCheck
from backupwarden.adapters.azure.protection_inventory import VmKind
from backupwarden.adapters.azure.recovery_services import VaultRef
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.preflight import (
    RESOURCE_GROUP_TYPE,
    RESTORE_POINT_COLLECTION_TYPE,
    DiskFacts,
    EnrolmentPolicy,
    EnrolmentVm,
    PolicyRestrictions,
    VaultLoad,
    backup_pending_resources,
    check_agent,
    check_enrolment,
)
from backupwarden.domain.protection_states import VmFacts
from backupwarden.domain.vault_selection import MappingRule, VaultFacts, choose_vault
from backupwarden.domain.vault_selection import VmFacts as PlacementFacts
from backupwarden.flows.new_vm.worker import ProtectStep

T = TypeVar("T")


@dataclass(frozen=True)
class Enrolment:
    """What enrolling an existing VM takes: the vaults of a subscription, the mapping rules, the
    pre-flight reads, and the protect step the new-VM flow takes (built with triggered_by Reconcile)."""

    vaults: Callable[[str], list[VaultFacts]]
    rules: tuple[MappingRule, ...]
    reads: EnrolmentReads
    restrictions: PolicyRestrictionsCheck
    step: ProtectStep


@dataclass(frozen=True)
class NoVault:
    reason: str


@dataclass(frozen=True)
class Placement:
    vault: VaultRef
    policy: str
    where: str  # "vault …, policy … (why that one)", for reasons
    refusals: tuple[str, ...]  # each "check: reason (fix: …)"; none: the VM may be enrolled
    warning: str  # the VM agent's, "" when none


class EnrolmentPreflight:
    """One run's pre-flight. What does not depend on the VM is read once a run, whichever worker asks
    first: a subscription's vaults, a policy's type, what Azure Policy says of a region's backup
    resource group."""

    def __init__(self, enrolment: Enrolment) -> None:
        self._enrolment = enrolment
        self._read: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def _once(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        """`read()`'s answer, asked once a run per key (a failed read is asked again next time)."""
        with self._lock:
            if key not in self._read:
                self._read[key] = read()
            return cast(T, self._read[key])

    def place(
        self, vm: VmFacts, kinds: Mapping[str, VmKind], items_per_vault: Counter[str]
    ) -> Placement | NoVault:
        """Where the VM would go and pre-flight's verdict, from the run's bulk read (`kinds`: disk and
        security types by VM id; `items_per_vault`: by vault id). Raises AzureCallError when a read fails."""
        placement = PlacementFacts(vm.id, vm.subscription_id, vm.region, dict(vm.tags))
        vaults = self._once(
            ("vaults", arm_key(vm.subscription_id)), lambda: self._enrolment.vaults(vm.subscription_id)
        )
        choice = choose_vault(placement, vaults, list(self._enrolment.rules))
        if choice.vault is None:
            return NoVault(choice.reason)
        vault = VaultRef.parse(choice.vault.vault_id)
        where = f"vault {vault.name}, policy {choice.policy} ({choice.reason})"
        refusals, warning = self._check(vm, vault, choice.policy, kinds, items_per_vault)
        return Placement(vault, choice.policy, where, tuple(refusals), warning)

    def _check(
        self,
        vm: VmFacts,
        vault: VaultRef,
        policy: str,
        kinds: Mapping[str, VmKind],
        items_per_vault: Counter[str],
    ) -> tuple[list[str], str]:
        policy_type = self._once(
            ("policy type", arm_key(vault.id), policy.lower()),
            lambda: self._enrolment.reads.policy_type(vault, policy),
        )
        if policy_type is None:
            return [
                f"policy-not-found: vault {vault.name} has no policy {policy}"
                " (fix: create it, or name an existing one with the backupwarden:policy tag"
                " or a mapping rule)"
            ], ""
        refusals = check_enrolment(
            _enrolment_vm(vm, kinds.get(arm_key(vm.id), VmKind())),
            EnrolmentPolicy(f"{vault.id}/backupPolicies/{policy}", policy_type),
            _vault_load(items_per_vault, vault),
            self._policy_restrictions(vm),
        )
        agent = check_agent(self._enrolment.reads.agent(vm.subscription_id, vm.resource_group, vm.name))
        warning = f"{agent.check.value}: {agent.reason} (fix: {agent.fix})" if agent else ""
        return [f"{r.check.value}: {r.reason} (fix: {r.fix})" for r in refusals], warning

    def _policy_restrictions(self, vm: VmFacts) -> list[PolicyRestrictions]:
        """What Azure Policy would deny of what the first backup creates:
        - the backup's resource group (AzureBackupRG_<region>_1), checked at the subscription: it may
          not exist yet;
        - the restore point collection at the VM's resource group, where a deny blocks the backup
          (UserErrorRequestDisallowedByPolicy, azure-facts §12); a check there also sees the
          subscription's assignments;
        - the restore point collection at the backup's resource group, where the service puts it, when
          that group exists already (an earlier backup in the region made it); a check at a group that
          does not exist answers ResourceGroupNotFound, and there is nothing to check there yet."""
        restrictions = self._enrolment.restrictions
        resources = backup_pending_resources(vm.id, vm.region)
        group = next(r for r in resources if r.resource_type == RESOURCE_GROUP_TYPE)
        collection = next(r for r in resources if r.resource_type == RESTORE_POINT_COLLECTION_TYPE)
        answers = [
            self._once(
                ("backup group", arm_key(vm.subscription_id), vm.region.lower()),
                lambda: restrictions.check(vm.subscription_id, group),
            ),
            restrictions.check(vm.subscription_id, collection, vm.resource_group),
        ]
        try:
            answers.append(restrictions.check(vm.subscription_id, collection, group.name))
        except AzureCallError as exc:
            if not exc.not_found:
                raise
        return answers


def _enrolment_vm(vm: VmFacts, kind: VmKind) -> EnrolmentVm:
    # Resource Graph's VM row gives disk types, not names: a disk is named by its place
    os_disk = DiskFacts(f"{vm.name} OS disk", kind.os_disk_type, is_os_disk=True)
    data_disks = (DiskFacts(f"{vm.name} data disk {i}", t) for i, t in enumerate(kind.data_disk_types))
    return EnrolmentVm(vm.id, kind.security_type, (os_disk, *data_disks))


def _vault_load(items_per_vault: Counter[str], vault: VaultRef) -> VaultLoad:
    """The vault's items as the bulk read found them: Azure VM items only (the read asks for no other
    workload), so a vault shared with other workloads is counted short of its 2,000-item limit."""
    key = arm_key(vault.id)
    return VaultLoad(key, protected_vms=items_per_vault[key], protected_items=items_per_vault[key])
