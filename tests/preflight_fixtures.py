"""Hand-built inputs of the enrolment pre-flight (backupwarden/domain/preflight.py) that pass every check."""

from __future__ import annotations

from backupwarden.domain.preflight import (
    DiskFacts,
    EnrolmentPolicy,
    EnrolmentVm,
    PolicyType,
    VaultLoad,
)

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
VAULT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices/vaults/v1"
)
VM_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm1"

HEALTHY_VM = EnrolmentVm(
    vm_id=VM_ID,
    security_type="",
    disks=(
        DiskFacts("vm1-os", "Premium_LRS", is_os_disk=True),
        DiskFacts("vm1-data0", "StandardSSD_LRS"),
    ),
)
STANDARD = EnrolmentPolicy(f"{VAULT_ID}/backupPolicies/DefaultPolicy", PolicyType.STANDARD)
ENHANCED = EnrolmentPolicy(f"{VAULT_ID}/backupPolicies/EnhancedPolicy", PolicyType.ENHANCED)
ROOMY_VAULT = VaultLoad(VAULT_ID, protected_vms=10, protected_items=12)
