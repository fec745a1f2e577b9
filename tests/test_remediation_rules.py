"""Remediation decisions and failure classes, table-driven: every remedy and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backupwarden.domain.failure_classes import DEFAULT_FAILURE_CLASSES, FailureClass, classify
from backupwarden.domain.remediation_rules import (
    Failure,
    LiveItem,
    RemediationPolicy,
    Remedy,
    RetryHistory,
    decide_remediation,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FAILED_AT = NOW - timedelta(minutes=20)
POLICY = RemediationPolicy(retry_cap=2, daily_budget=3, backoff=timedelta(minutes=30))
LIVE = LiveItem(exists=True, last_backup_status="Failed")
FRESH = RetryHistory(retries_today=0)


def failure(code: str, recommendation: str = "") -> Failure:
    return Failure("vm", "vault", code, FAILED_AT, "job-1", recommendation)


CASES = [
    (
        "transient service error is retried",
        failure("BackUpOperationFailed"),
        LIVE,
        FRESH,
        Remedy.RETRY,
        "BackUpOperationFailed: retry, retry 1",
    ),
    (
        "V2 code is retried",
        failure("BackUpOperationFailedV2"),
        LIVE,
        FRESH,
        Remedy.RETRY,
        "BackUpOperationFailedV2",
    ),
    (
        "codes compare case-insensitively",
        failure("backupoperationfailed"),
        LIVE,
        FRESH,
        Remedy.RETRY,
        "backup",
    ),
    (
        "VM-side error is retried under the cap",
        failure("UserErrorGuestAgentStatusUnavailable"),
        LIVE,
        RetryHistory(1, NOW - timedelta(hours=1)),
        Remedy.RETRY,
        "UserErrorGuestAgentStatusUnavailable: retry_capped, retry 2",
    ),
    (
        "VM-side error at the cap escalates",
        failure("UserErrorGuestAgentStatusUnavailable", "Check the agent."),
        LIVE,
        RetryHistory(2, NOW - timedelta(hours=1)),
        Remedy.ESCALATE,
        "UserErrorGuestAgentStatusUnavailable: still failing after 2 retries: Check the agent.",
    ),
    (
        "policy block escalates at once",
        failure("UserErrorRequestDisallowedByPolicy", "Exempt the vault."),
        LIVE,
        FRESH,
        Remedy.ESCALATE,
        "UserErrorRequestDisallowedByPolicy: configuration blocks the backup: Exempt the vault.",
    ),
    (
        "permanent error escalates at once",
        failure("UserErrorVmNotFoundV2"),
        LIVE,
        FRESH,
        Remedy.ESCALATE,
        "UserErrorVmNotFoundV2: a retry cannot fix it",
    ),
    (
        "unknown code escalates",
        failure("SomethingNew"),
        LIVE,
        FRESH,
        Remedy.ESCALATE,
        "SomethingNew is not a known failure",
    ),
    (
        "in-progress code is a no-op",
        failure("UserErrorBackupOperationInProgress"),
        LIVE,
        FRESH,
        Remedy.NOOP,
        "the failure says a backup was already running",
    ),
    (
        "a later success resolves it",
        failure("BackUpOperationFailed"),
        LiveItem(True, "Completed", NOW - timedelta(minutes=5)),
        FRESH,
        Remedy.RESOLVED,
        "a later backup succeeded at",
    ),
    (
        "a later success with warnings resolves it too: it made a recovery point",
        failure("BackUpOperationFailed"),
        LiveItem(True, "CompletedWithWarnings", NOW - timedelta(minutes=5)),
        FRESH,
        Remedy.RESOLVED,
        "a later backup succeeded (with warnings) at",
    ),
    (
        "an older success does not",
        failure("BackUpOperationFailed"),
        LiveItem(True, "Completed", FAILED_AT - timedelta(hours=1)),
        FRESH,
        Remedy.RETRY,
        "BackUpOperationFailed",
    ),
    (
        "running job: no-op",
        failure("BackUpOperationFailed"),
        LiveItem(True, "Failed", job_in_progress=True),
        FRESH,
        Remedy.NOOP,
        "a backup job is already in progress",
    ),
    (
        "item gone escalates",
        failure("BackUpOperationFailed"),
        LiveItem(exists=False),
        FRESH,
        Remedy.ESCALATE,
        "the VM is no longer protected by its vault",
    ),
    (
        "backing off",
        failure("BackUpOperationFailed"),
        LIVE,
        RetryHistory(1, NOW - timedelta(minutes=10)),
        Remedy.NOOP,
        "backing off until 2026-11-25T12:20Z",
    ),
    (
        "daily budget spent",
        failure("BackUpOperationFailed"),
        LIVE,
        RetryHistory(3, NOW - timedelta(hours=2)),
        Remedy.NOOP,
        "daily budget spent (3 retries today)",
    ),
    (
        "still unprotected is retried",
        failure("StillUnprotected"),
        LIVE,
        FRESH,
        Remedy.RETRY,
        "StillUnprotected: retry",
    ),
]


@pytest.mark.parametrize(
    ("name", "given", "live", "history", "remedy", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_remediation_decision(
    name: str, given: Failure, live: LiveItem, history: RetryHistory, remedy: Remedy, reason: str
) -> None:
    decision = decide_remediation(given, live, history, POLICY, NOW)
    assert decision.remedy is remedy
    assert decision.reason.startswith(reason), decision.reason


def test_settings_can_extend_the_failure_table() -> None:
    extra = {"UserErrorCustomThing": FailureClass.RETRY}
    policy = RemediationPolicy(2, 3, timedelta(minutes=30), extra_classes=extra)
    assert (
        decide_remediation(failure("UserErrorCustomThing"), LIVE, FRESH, policy, NOW).remedy is Remedy.RETRY
    )
    assert classify("UserErrorCustomThing") is None


def test_every_code_of_azure_facts_section_7_is_classified() -> None:
    section_7 = {
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
    }
    assert {code: DEFAULT_FAILURE_CLASSES[code] for code in section_7} == section_7
