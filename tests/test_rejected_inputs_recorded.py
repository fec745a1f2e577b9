"""Inputs the app rejects and nobody resends become `failed` records in the outbox (on their way to
BackupAutomationActions_CL), with the reason and what is known of the VM or the alert: an Event Grid
event `vm_written` cannot read (acknowledged, so Event Grid does not retry it) and an alert body the
webhook answers 400 (action groups do not retry a 400). A record quotes a bounded part of the input,
never the whole of it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.flows.recorder import INVALID_WORK_ITEM
from tests.alert_webhook_fixtures import handlers_fixture, http_request, log_alert  # noqa: F401
from tests.new_vm_fixtures import grid_event
from tests.remediation_fixtures import RemediationBench

Functions = dict[str, Callable[..., Any]]
Event = dict[str, Any]
SECRET = "do-not-copy-me-into-a-record"


def recorded(bench: RemediationBench) -> list[dict[str, Any]]:
    return [record.row for record in bench.outbox().pending(AUTOMATION_ACTIONS.stream)]


def one_failed_record(bench: RemediationBench) -> dict[str, Any]:
    [row] = recorded(bench)
    assert (row["Result"], row["ErrorCode"]) == ("failed", INVALID_WORK_ITEM)
    assert SECRET not in json.dumps(row, default=str), "no part of the body beyond its ids"
    assert len(row["Reason"]) < 800, "the reason quotes at most a little of the input"
    return row


# --- Event Grid ---------------------------------------------------------------------------------------
def _data_none(event: Event) -> None:
    event["data"] = None


def _uri_a_number(event: Event) -> None:
    event["data"]["resourceUri"] = 7


def _uri_not_a_vm(event: Event) -> None:
    event["data"]["resourceUri"] = "/subscriptions/x/resourceGroups/rg"
    event["subject"] = "/subscriptions/x/resourceGroups/rg"


def _uri_of_1mb(event: Event) -> None:
    event["data"]["resourceUri"] += "x" * (1024 * 1024) + SECRET  # the parser quotes its first 200


def _no_event_type(event: Event) -> None:
    event["eventType"] = ""
    event["data"]["secret"] = SECRET


REJECTED_EVENTS = [
    # (case, change, part of the reason, whether the subject still names the VM)
    ("no data", _data_none, "'data' must be an object", True),
    ("resourceUri a number", _uri_a_number, "data.resourceUri must be a string", True),
    ("not a VM", _uri_not_a_vm, "is not a virtual machine id", False),
    ("a 1 MB resource id", _uri_of_1mb, "is not a virtual machine id", True),
    ("no event type", _no_event_type, "missing eventType", True),
]


@pytest.mark.parametrize(
    ("change", "reason", "vm_known"), [c[1:] for c in REJECTED_EVENTS], ids=[c[0] for c in REJECTED_EVENTS]
)
def test_a_rejected_event_becomes_one_failed_record_naming_the_vm_when_known(
    remediation_bench: RemediationBench,
    handlers: Functions,
    change: Callable[[Event], None],
    reason: str,
    vm_known: bool,
) -> None:
    bench = remediation_bench
    vm_id = bench.create_vm("web-51")
    event = copy.deepcopy(bench.events_for(vm_id)[0])
    change(event)

    handlers["vm_written"](grid_event(event))  # returns: Event Grid must not retry it

    row = one_failed_record(bench)
    assert (row["Action"], row["Source"]) == ("enable_protection", "EventGrid")
    assert row["Reason"].startswith("rejected event: ") and reason in row["Reason"]
    assert row["VmId"] == (arm_key(vm_id) if vm_known else "")
    assert bench.visible_bodies() == []


# --- the alert webhook -----------------------------------------------------------------------------------
def _unsupported_service() -> bytes:
    alert = log_alert()
    alert["data"]["essentials"]["monitoringService"] = "Resource Health"
    alert["data"]["alertContext"]["secret"] = SECRET
    return json.dumps(alert).encode()


def _alert_id_too_long() -> bytes:
    alert = log_alert()
    alert["data"]["essentials"]["alertId"] = "/subscriptions/x/alerts/" + "a" * 5000 + SECRET
    return json.dumps(alert).encode()


def _too_large() -> bytes:
    alert = log_alert()
    alert["data"]["alertContext"]["padding"] = SECRET + "x" * (300 * 1024)
    return json.dumps(alert).encode()


REJECTED_BODIES: list[tuple[str, Callable[[], bytes], str, bool]] = [
    # (case, body, part of the reason, whether the alert id is readable)
    ("not JSON", lambda: SECRET.encode(), "not JSON", False),
    ("JSON, not an alert", lambda: json.dumps({"secret": SECRET}).encode(), "", False),
    ("unsupported service", _unsupported_service, "Resource Health", True),
    ("alert id too long", _alert_id_too_long, "longer than 1024 characters", True),
    ("over 256 KiB", _too_large, "the limit is 262144", False),
]


@pytest.mark.parametrize(
    ("body", "reason", "id_readable"), [c[1:] for c in REJECTED_BODIES], ids=[c[0] for c in REJECTED_BODIES]
)
def test_a_body_answered_400_becomes_one_failed_record_with_the_reason(
    remediation_bench: RemediationBench,
    handlers: Functions,
    body: Callable[[], bytes],
    reason: str,
    id_readable: bool,
) -> None:
    raw = body()

    response = handlers["alert_webhook"](http_request(raw))

    assert response.status_code == 400
    row = one_failed_record(remediation_bench)
    assert (row["Action"], row["Source"], row["VmId"]) == ("remediate", "Alert", "")
    assert row["Reason"].startswith("rejected alert notification (alert ")
    assert reason in row["Reason"]
    assert json.loads(response.get_body())["reason"][:100] in row["Reason"]
    if id_readable:
        alert_id = json.loads(raw)["data"]["essentials"]["alertId"]
        assert alert_id[:200] in row["Reason"] and "rule backupwarden-backup-failed" in row["Reason"]
    else:
        assert "(alert unknown, rule unknown)" in row["Reason"]


def test_an_accepted_alert_is_not_recorded_as_failed(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    response = handlers["alert_webhook"](http_request(log_alert()))

    assert response.status_code == 202
    remediation_bench.outbox().ensure_table()
    assert recorded(remediation_bench) == []
