"""Errors of the Recovery Services (Backup) service, shaped as the real service answers.

Codes marked "documented" come from Microsoft's troubleshooting pages; the others were not
found in any public source and are plausible names in the service's `BMSUserError…` /
`UserError…` style (the app must key its decisions on the documented ones only).
"""

from __future__ import annotations

from emulator.core.errors import ServiceError


class VaultNotFound(ServiceError):
    """ARM's answer for a vault that does not exist (documented ARM shape)."""

    status = 404
    code = "ResourceNotFound"

    def __init__(self, resource_group: str, vault_name: str) -> None:
        super().__init__(
            f"The Resource 'Microsoft.RecoveryServices/vaults/{vault_name}' under resource group "
            f"'{resource_group}' was not found. For more details please go to "
            "https://aka.ms/ARMResourceNotFoundFix"
        )


class BackupObjectNotFound(ServiceError):
    """An item, policy, job or operation the vault does not know."""

    status = 404
    code = "BMSUserErrorObjectNotFound"


class InvalidBackupRequest(ServiceError):
    """A request body or $filter the service cannot use."""

    status = 400
    code = "BMSUserErrorInvalidInput"


class VmNotFound(ServiceError):
    status = 400
    code = "BMSUserErrorInvalidSourceResourceId"

    def __init__(self, vm_id: str) -> None:
        super().__init__(f"The virtual machine '{vm_id}' could not be found. Check the sourceResourceId.")


class VmInDifferentRegion(ServiceError):
    status = 400
    code = "UserErrorVmAndVaultInDifferentRegion"

    def __init__(self, vm_location: str, vault_location: str) -> None:
        super().__init__(
            f"The virtual machine is in region '{vm_location}' and the Recovery Services vault in "
            f"'{vault_location}'. A virtual machine can only be protected by a vault in the same region."
        )


class VmInDifferentSubscription(ServiceError):
    status = 400
    code = "UserErrorVmAndVaultInDifferentSubscription"

    def __init__(self) -> None:
        super().__init__(
            "The virtual machine and the Recovery Services vault are in different subscriptions. "
            "A virtual machine can only be protected by a vault in the same subscription."
        )


class PolicyNotFound(ServiceError):
    status = 400
    code = "BMSUserErrorPolicyNotFound"

    def __init__(self, policy_id: str) -> None:
        super().__init__(f"The backup policy '{policy_id}' was not found in the vault.")


class VmAlreadyProtected(ServiceError):
    status = 400
    code = "BMSUserErrorProtectedItemAlreadyProtected"

    def __init__(self, vm_name: str, vault_id: str) -> None:
        super().__init__(
            f"The virtual machine '{vm_name}' is already protected by the Recovery Services vault "
            f"'{vault_id}'. Stop protection there before configuring it in another vault."
        )


class VaultItemLimitReached(ServiceError):
    status = 400
    code = "BMSUserErrorProtectedItemsLimitReached"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The Recovery Services vault already protects the maximum of {limit} Azure virtual "
            "machines. Use another vault."
        )


class BackupOperationInProgress(ServiceError):
    """Documented: code and message of the troubleshooting page for VM backup."""

    status = 400
    code = "UserErrorBackupOperationInProgress"

    def __init__(self) -> None:
        super().__init__("Unable to initiate backup as another backup operation is currently in progress")


class OnDemandBackupLimitReached(ServiceError):
    status = 400
    code = "UserErrorMaxOnDemandBackupsReached"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The maximum of {limit} on-demand backups for this item in a day (UTC) has been reached. "
            "Trigger the next backup after 00:00 UTC."
        )
