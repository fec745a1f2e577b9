"""The three queue messages: their JSON, byte for byte as queued, and the error each reports when refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backupwarden.domain.records import Candidate
from backupwarden.flows.new_vm.messages import InvalidNewVmWorkItem, NewVmWorkItem
from backupwarden.flows.remediation.messages import InvalidRemediationWorkItem, RemediationWorkItem
from backupwarden.flows.sweep.messages import InvalidSweepWorkItem, SweepWorkItem

AT = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
SUB = "11111111-1111-4111-8111-111111111111"
VM = f"/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/x"

SWEEP = SweepWorkItem(
    "run-1", False, (Candidate("s", "vault", "c", "i", "vm", "n", AT, {"a": "b"}, True),), 5
)
SWEEP_JSON = (
    '{"v":1,"run_id":"run-1","dry_run":false,"cap":5,"candidates":[{"subscription_id":"s",'
    '"vault_id":"vault","container_name":"c","item_name":"i","vm_id":"vm","vm_name":"n",'
    '"configured_at":"2026-11-25T12:30:00+00:00","vm_tags":{"a":"b"},"job_in_progress":true}]}'
)
NEW_VM = NewVmWorkItem(VM, SUB, "g", "x", "e", "c", 2)
NEW_VM_JSON = (
    '{"correlation_id": "c", "event_id": "e", "provisioning_waits": 2, "resource_group": "g", '
    f'"subscription_id": "{SUB}", "vm_id": "{VM}", "vm_name": "x"}}'
)
REMEDIATION = RemediationWorkItem(
    "alert-1", "rule", "Log Alerts V2", AT, AT - timedelta(hours=1), AT, (("VmId", "vm"),), ("t",)
)
REMEDIATION_JSON = (
    '{"alert_id": "alert-1", "dimensions": [{"name": "VmId", "value": "vm"}], '
    '"fired_at": "2026-11-25T12:30:00Z", "monitoring_service": "Log Alerts V2", "rule": "rule", '
    '"target_ids": ["t"], "window_end": "2026-11-25T12:30:00Z", "window_start": "2026-11-25T11:30:00Z"}'
)


@pytest.mark.parametrize(
    ("item", "text"),
    [(SWEEP, SWEEP_JSON), (NEW_VM, NEW_VM_JSON), (REMEDIATION, REMEDIATION_JSON)],
    ids=["sweep", "new VM", "remediation"],
)
def test_a_work_item_is_queued_as_this_json_and_read_back_equal(
    item: SweepWorkItem | NewVmWorkItem | RemediationWorkItem, text: str
) -> None:
    assert item.to_json() == text
    assert type(item).from_json(text) == item


def test_each_message_type_refuses_with_its_own_error() -> None:
    refusals = []
    for read in (SweepWorkItem.from_json, NewVmWorkItem.from_json, RemediationWorkItem.from_json):
        with pytest.raises(ValueError) as raised:
            read("[]")
        refusals.append(type(raised.value))
    assert refusals == [InvalidSweepWorkItem, InvalidNewVmWorkItem, InvalidRemediationWorkItem]


@pytest.mark.parametrize(
    ("configured_at", "message"),
    [
        ('"soon"', "malformed sweep work item: ValueError(\"Invalid isoformat string: 'soon'\")"),
        ("5", "malformed sweep work item: TypeError('fromisoformat: argument must be str')"),
    ],
)
def test_a_sweep_candidate_with_a_bad_time_is_refused_with_the_reason(
    configured_at: str, message: str
) -> None:
    text = SWEEP_JSON.replace('"2026-11-25T12:30:00+00:00"', configured_at)
    with pytest.raises(InvalidSweepWorkItem) as raised:
        SweepWorkItem.from_json(text)
    assert str(raised.value) == message


def test_a_sweep_candidate_time_without_a_zone_is_utc() -> None:
    text = SWEEP_JSON.replace("2026-11-25T12:30:00+00:00", "2026-11-25T12:30:00")
    assert SweepWorkItem.from_json(text).candidates[0].configured_at == AT
