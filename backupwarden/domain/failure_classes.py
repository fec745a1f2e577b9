"""What a backup failure calls for, by error code (azure-facts §7 as data; settings may extend it)."""

from __future__ import annotations

from enum import StrEnum


class FailureClass(StrEnum):
    IN_PROGRESS = "in_progress"  # a job already runs: nothing to do
    RETRY = "retry"  # transient service error: retry later
    RETRY_CAPPED = "retry_capped"  # VM-side trouble: retry a few times, then escalate
    ESCALATE_CONFIG = "escalate_config"  # configuration blocks it: escalate, no retry
    ESCALATE_PERMANENT = "escalate_permanent"  # permanent: escalate, no retry


DEFAULT_FAILURE_CLASSES: dict[str, FailureClass] = {
    "UserErrorBackupOperationInProgress": FailureClass.IN_PROGRESS,
    "BackUpOperationFailed": FailureClass.RETRY,
    "BackUpOperationFailedV2": FailureClass.RETRY,
    "UserErrorGuestAgentStatusUnavailable": FailureClass.RETRY_CAPPED,
    "GuestAgentSnapshotTaskStatusError": FailureClass.RETRY_CAPPED,
    "ExtensionSnapshotFailedNoNetwork": FailureClass.RETRY_CAPPED,
    "ExtensionOperationFailedForManagedDisks": FailureClass.RETRY_CAPPED,
    "UserErrorVmProvisioningStateFailed": FailureClass.RETRY_CAPPED,
    "UserErrorRpCollectionLimitReached": FailureClass.ESCALATE_CONFIG,
    "UserErrorRequestDisallowedByPolicy": FailureClass.ESCALATE_CONFIG,
    "UserErrorVmNotFoundV2": FailureClass.ESCALATE_PERMANENT,
    "UserErrorUnsupportedDiskSize": FailureClass.ESCALATE_PERMANENT,
    "UserErrorKeyvaultPermissionsNotConfigured": FailureClass.ESCALATE_PERMANENT,
    # not a service code: the "still unprotected" rule's VMs, whose first backup is still missing
    "StillUnprotected": FailureClass.RETRY,
}


def classify(error_code: str, extra: dict[str, FailureClass] | None = None) -> FailureClass | None:
    """The class of an error code (case-insensitive); None for a code nobody classified."""
    table = {**DEFAULT_FAILURE_CLASSES, **(extra or {})}
    wanted = error_code.strip().lower()
    return next((kind for code, kind in table.items() if code.lower() == wanted), None)
