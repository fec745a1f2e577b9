"""Queue messages no handler can finish, through the functions the host registers: a malformed message on
the protect, sweep or remediation queue, and a message the queue gave up on (its poison queue). Each
becomes a `failed` decision in the outbox (on its way to BackupAutomationActions_CL) with the reason,
and an error in the log; none calls Azure. The settings are in the environment, as the host sets them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Candidate
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.sweep.messages import SweepWorkItem
from functions.context import GAVE_UP
from tests.alert_webhook_fixtures import handlers_fixture  # noqa: F401
from tests.new_vm_fixtures import PROD, WEU_VAULT, vm_id_of
from tests.remediation_fixtures import RemediationBench

Functions = dict[str, Callable[..., Any]]  # the functions function_app registers, by name
VM_ID = vm_id_of(PROD, "rg-app", "web-07").lower()


def recorded(bench: RemediationBench) -> list[dict[str, Any]]:
    """The decision records waiting in the outbox for the next outcomes run."""
    return [record.row for record in bench.outbox().pending(AUTOMATION_ACTIONS.stream)]


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == message]


def protect_item() -> str:
    return NewVmWorkItem(
        vm_id=VM_ID, subscription_id=PROD, resource_group="rg-app", vm_name="web-07", event_id="e1"
    ).to_json()


def sweep_item() -> str:
    candidate = Candidate(
        subscription_id=PROD,
        vault_id=WEU_VAULT.lower(),
        container_name="iaasvmcontainerv2;rg-app;web-07",
        item_name="vm;iaasvmcontainerv2;rg-app;web-07",
        vm_id=VM_ID,
        vm_name="web-07",
    )
    return SweepWorkItem(run_id=str(uuid.uuid4()), dry_run=False, candidates=(candidate,)).to_json()


def remediation_item() -> str:
    return RemediationWorkItem(
        alert_id=f"/subscriptions/{PROD}/providers/Microsoft.AlertsManagement/alerts/{uuid.uuid4()}",
        rule="backupwarden-backup-failed",
        monitoring_service="Log Alerts V2",
        fired_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        window_start=None,
        window_end=None,
        dimensions=(("VmId", vm_id_of(PROD, "rg-app", "web-07")), ("ErrorCode", "BackUpOperationFailed")),
    ).to_json()


# --- malformed: dropped at once (a retry cannot fix it), recorded as failed ------------------------------
MALFORMED = [
    # (function, body, the error it logs, action, source, reason)
    ("protect_vm", b"not json", "dropped malformed work item", "enable_protection", "Queue", "not JSON"),
    ("protect_vm", b"\xff\xfe\x00", "dropped malformed work item", "enable_protection", "Queue", "not JSON"),
    (
        "sweep_worker",
        b"not json",
        "dropped malformed sweep work item",
        "trigger_backup",
        "Queue",
        "not JSON",
    ),
    (
        "sweep_worker",
        b'{"v": 99}',
        "dropped malformed sweep work item",
        "trigger_backup",
        "Queue",
        "not a sweep work item of format",
    ),
    (
        "remediate",
        b'{"alert_id": "a"}',
        "dropped malformed remediation item",
        "remediate",
        "Alert",
        "missing fields: rule, monitoring_service",
    ),
]


@pytest.mark.parametrize(
    ("function", "body", "error", "action", "source", "reason"),
    MALFORMED,
    ids=["protect: not JSON", "protect: not UTF-8", "sweep: not JSON", "sweep: other format", "remediation"],
)
def test_a_malformed_message_is_recorded_as_a_failed_decision_with_the_reason(
    remediation_bench: RemediationBench,
    handlers: Functions,
    caplog: pytest.LogCaptureFixture,
    function: str,
    body: bytes,
    error: str,
    action: str,
    source: str,
    reason: str,
) -> None:
    handlers[function](func.QueueMessage(id="m-1", body=body))  # returns: the host deletes the message

    [log] = logged(caplog, error)
    assert (log.levelno, log.message_id) == (logging.ERROR, "m-1")  # type: ignore[attr-defined]
    [row] = recorded(remediation_bench)
    assert (row["Action"], row["Result"], row["Source"], row["VmId"], row["ErrorCode"]) == (
        action,
        "failed",
        source,
        "",
        "InvalidWorkItem",
    )
    assert row["Reason"].startswith("malformed ") and reason in row["Reason"]
    assert remediation_bench.requests() == [], "nothing to act on: no Azure call"


# --- poison: the queue gave up, recorded as failed for the VM the body names ----------------------------
GIVEN_UP = [
    # (function, body, the outcome it logs, action, source, the VM the record names)
    ("protect_vm_poison", protect_item, "protect_vm outcome", "enable_protection", "Queue", VM_ID),
    ("sweep_worker_poison", sweep_item, "sweep outcome", "trigger_backup", "Queue", VM_ID),
    ("remediate_poison", remediation_item, "remediation outcome", "remediate", "Alert", VM_ID),
]


@pytest.mark.parametrize(
    ("function", "body", "outcome_log", "action", "source", "vm_id"),
    GIVEN_UP,
    ids=["protect", "sweep", "remediation"],
)
def test_a_poison_message_is_recorded_as_a_failed_decision_for_its_vm(
    remediation_bench: RemediationBench,
    handlers: Functions,
    caplog: pytest.LogCaptureFixture,
    function: str,
    body: Callable[[], str],
    outcome_log: str,
    action: str,
    source: str,
    vm_id: str,
) -> None:
    handlers[function](func.QueueMessage(id="m-2", body=body()))

    [log] = logged(caplog, outcome_log)
    assert (log.levelno, log.result, log.vm_id, log.message_id) == (  # type: ignore[attr-defined]
        logging.ERROR,
        "failed",
        vm_id,
        "m-2",
    )
    [row] = recorded(remediation_bench)
    assert (row["Action"], row["Result"], row["Source"], row["VmId"], row["DryRun"]) == (
        action,
        "failed",
        source,
        vm_id,
        False,
    )
    assert "gave up" in row["Reason"] and "poison queue" in row["Reason"]
    assert remediation_bench.requests() == []


@pytest.mark.parametrize(
    ("function", "outcome_log", "action", "source"),
    [
        ("protect_vm_poison", "protect_vm outcome", "enable_protection", "Queue"),
        ("sweep_worker_poison", "sweep outcome", "trigger_backup", "Queue"),
        ("remediate_poison", "remediation outcome", "remediate", "Alert"),
    ],
    ids=["protect", "sweep", "remediation"],
)
def test_a_poison_message_that_is_no_work_item_is_recorded_with_why(
    remediation_bench: RemediationBench,
    handlers: Functions,
    caplog: pytest.LogCaptureFixture,
    function: str,
    outcome_log: str,
    action: str,
    source: str,
) -> None:
    handlers[function](func.QueueMessage(id="m-3", body=json.dumps(["garbage"]).encode()))

    [log] = logged(caplog, outcome_log)
    assert (log.levelno, log.result, log.vm_id) == (logging.ERROR, "failed", "")  # type: ignore[attr-defined]
    [row] = recorded(remediation_bench)
    assert (row["Action"], row["Result"], row["Source"], row["VmId"]) == (action, "failed", source, "")
    assert row["Reason"].startswith(f"{GAVE_UP}; not a work item: ")
    assert remediation_bench.requests() == []
