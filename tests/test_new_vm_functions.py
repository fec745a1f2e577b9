"""The new-VM functions as the host calls them: real `func.EventGridEvent` / `func.QueueMessage` objects,
settings from the environment, the emulator over HTTPS and the work queue on Azurite.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest

from backupwarden.domain.records import Result
from backupwarden.domain.vm_events import VmWritten, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import TransientFailure
from emulator.core.realism import Fault
from tests.new_vm_fixtures import (
    BACKUP_POST,
    PROTECT_PUT,
    NewVmBench,
    grid_event,
    queue_message,
)

Handler = Callable[[Any], None]
Event = dict[str, Any]


@pytest.fixture(scope="module")
def handlers() -> Iterator[dict[str, Handler]]:
    """The functions the deployed entry point registers, by name. An app indexes only once, so this
    takes a fresh one and leaves another fresh one behind for whoever imports `function_app` next."""
    import function_app

    app = importlib.reload(function_app).app
    yield {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    importlib.reload(function_app)


@pytest.fixture
def bench(new_vm_bench: NewVmBench, monkeypatch: pytest.MonkeyPatch) -> Iterator[NewVmBench]:
    """The bench, with its settings in the environment as the Functions host sets app settings."""
    use_settings(new_vm_bench, monkeypatch)
    yield new_vm_bench


def use_settings(bench: NewVmBench, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    for name, value in bench.env(**overrides).items():
        monkeypatch.setenv(name, value)


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == message]


def expected_body(event: Event) -> str:
    parsed = read_vm_write(event)
    assert isinstance(parsed, VmWritten)
    return NewVmWorkItem.from_event(parsed).to_json()


# --- vm_written ----------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_vm_written_enqueues_one_work_item_for_a_vm_write(
    bench: NewVmBench, handlers: dict[str, Handler], schema: str
) -> None:
    bench.event_grid.configure({"schema": schema})
    vm = bench.create_vm("web-30")
    event = bench.events_for(vm)[0]

    handlers["vm_written"](grid_event(event))

    bodies = bench.visible_bodies()  # base64 on the wire, as the queue trigger expects
    assert bodies == [expected_body(event)]
    item = NewVmWorkItem.from_json(bodies[0])
    assert (item.vm_id, item.event_id, item.provisioning_waits) == (vm, event["id"], 0)
    assert not bench.requests(), "the trigger only validates and enqueues: no Azure call"


def test_vm_written_then_protect_vm_protects_the_vm(bench: NewVmBench, handlers: dict[str, Handler]) -> None:
    bench.service_takes_its_time()
    vm = bench.create_vm("web-31", tags={"backupwarden:policy": "EnhancedPolicy"})
    handlers["vm_written"](grid_event(bench.events_for(vm)[0]))
    [message] = bench.receive()

    handlers["protect_vm"](queue_message(message))

    item = bench.protected_item(vm)["properties"]
    assert (item["protectionState"], item["policyName"]) == ("IRPending", "EnhancedPolicy")
    assert [e.status for e in bench.calls(PROTECT_PUT, vm)] == [202]
    assert [e.status for e in bench.calls(BACKUP_POST, vm)] == [202]


def test_the_duplicate_pair_through_both_functions_protects_once(
    bench: NewVmBench, handlers: dict[str, Handler]
) -> None:
    vm = bench.create_vm("web-32")
    for event in bench.events_for(vm):
        handlers["vm_written"](grid_event(event))
    messages = bench.receive()
    assert len(messages) == 2, "the trigger enqueues each delivery; the worker collapses them"

    for message in messages:
        handlers["protect_vm"](queue_message(message))

    assert [e.status for e in bench.calls(PROTECT_PUT, vm)] == [202]
    assert [e.status for e in bench.calls(BACKUP_POST, vm)] == [202]


def test_vm_written_ignores_a_storage_account_write(
    bench: NewVmBench, handlers: dict[str, Handler], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = copy.deepcopy(bench.events_for(bench.create_vm("web-33"))[0])
    storage = (
        event["data"]["resourceUri"].split("/providers/")[0]
        + "/providers/Microsoft.Storage/storageAccounts/st1"
    )
    event["data"].update(operationName="Microsoft.Storage/storageAccounts/write", resourceUri=storage)
    event["subject"] = storage

    handlers["vm_written"](grid_event(event))

    assert bench.visible_bodies() == []
    [record] = logged(caplog, "ignored event")
    assert record.reason == (  # type: ignore[attr-defined]
        "operation Microsoft.Storage/storageAccounts/write is not Microsoft.Compute/virtualMachines/write"
    )


def broken(change: Callable[[Event], None]) -> Callable[[Event], Event]:
    def apply(event: Event) -> Event:
        event = copy.deepcopy(event)
        change(event)
        return event

    return apply


MALFORMED = [
    ("no data", broken(lambda e: e.update(data=None)), "'data' must be an object"),
    ("data a string", broken(lambda e: e.update(data="{}")), "'data' must be an object"),
    (
        "resourceUri a number",
        broken(lambda e: e["data"].update(resourceUri=7)),
        "data.resourceUri must be a string",
    ),
    (
        "non-VM resourceUri",
        broken(lambda e: e["data"].update(resourceUri="/subscriptions/x/resourceGroups/rg")),
        "is not a virtual machine id",
    ),
    (
        "odd characters in the VM id",
        broken(lambda e: e["data"].update(resourceUri=e["data"]["resourceUri"] + "%2F..%2F..")),
        "is not a virtual machine id",
    ),
    (
        "a 1 MB resource id",
        broken(lambda e: e["data"].update(resourceUri=e["data"]["resourceUri"] + "x" * (1024 * 1024))),
        "is not a virtual machine id",
    ),
]


@pytest.mark.parametrize(("change", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_vm_written_rejects_a_malformed_event_without_raising(
    bench: NewVmBench,
    handlers: dict[str, Handler],
    caplog: pytest.LogCaptureFixture,
    change: Callable[[Event], Event],
    reason: str,
) -> None:
    event = change(bench.events_for(bench.create_vm("web-34"))[0])

    handlers["vm_written"](grid_event(event))  # returns: Event Grid must not retry it

    assert bench.visible_bodies() == []
    [record] = logged(caplog, "rejected event")
    assert record.levelno == logging.ERROR
    assert reason in record.reason  # type: ignore[attr-defined]
    assert len(record.reason) < 400, "the reason quotes at most a little of the event"  # type: ignore[attr-defined]


def test_vm_written_takes_a_1mb_vm_write_and_enqueues_a_small_item(
    bench: NewVmBench, handlers: dict[str, Handler]
) -> None:
    vm = bench.create_vm("web-35")
    event = copy.deepcopy(bench.events_for(vm)[0])
    event["data"]["padding"] = "x" * (1024 * 1024 - 4096)
    assert len(json.dumps(event)) < 1024 * 1024

    handlers["vm_written"](grid_event(event))

    bodies = bench.visible_bodies()
    assert bodies == [expected_body(event)]
    assert len(bodies[0]) < 1024


# --- protect_vm ------------------------------------------------------------------------------------
def test_protect_vm_requeues_a_provisioning_vm_with_a_visibility_delay(
    new_vm_bench: NewVmBench, handlers: dict[str, Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(new_vm_bench, monkeypatch, BACKUPWARDEN_PROVISIONING_RECHECK_S="1")
    vm = new_vm_bench.create_vm("web-36", provisioning_state="Creating")
    handlers["vm_written"](grid_event(new_vm_bench.events_for(vm)[0]))
    [message] = new_vm_bench.receive()

    handlers["protect_vm"](queue_message(message))
    requeued_at = time.monotonic()

    assert new_vm_bench.visible_bodies() == [], "the recheck waits out its visibility delay"
    bodies: list[str] = []
    while not bodies and time.monotonic() - requeued_at < 5:
        time.sleep(0.1)
        bodies = new_vm_bench.visible_bodies()
    assert time.monotonic() - requeued_at >= 0.9
    [body] = bodies
    assert NewVmWorkItem.from_json(body) == NewVmWorkItem.from_json(message.content).waited_once_more()
    assert not new_vm_bench.changing_writes()


def test_protect_vm_raises_on_a_transient_failure(
    new_vm_bench: NewVmBench,
    handlers: dict[str, Handler],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_settings(new_vm_bench, monkeypatch, BACKUPWARDEN_HTTP_RETRY_TOTAL="0")
    vm = new_vm_bench.create_vm("web-37")
    new_vm_bench.emulator.faults.add(Fault(path_regex=r"/protectedItems/[^/]+$", status=503, method="PUT"))

    with pytest.raises(TransientFailure):  # the host then redelivers, up to maxDequeueCount
        handlers["protect_vm"](func.QueueMessage(id="m1", body=new_vm_bench.work_item(vm).to_json()))

    [record] = logged(caplog, "transient failure; the queue will redeliver")
    assert (record.vm_id, record.result, record.error_code) == (  # type: ignore[attr-defined]
        vm,
        Result.FAILED.value,
        "InternalServerError",
    )
    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [503]


ITEM_FIELDS = {
    "vm_id": "/subscriptions/11111111-1111-4111-8111-111111111111/resourcegroups/rg-new/providers/"
    "microsoft.compute/virtualmachines/web-39",
    "subscription_id": "11111111-1111-4111-8111-111111111111",
    "resource_group": "rg-new",
    "vm_name": "web-39",
    "event_id": "e1",
}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "a work item must be a JSON object"),
        (b"{}", "missing fields"),
        (
            b'{"vm_id": 5, "subscription_id": "s", "resource_group": "g", "vm_name": "n", "event_id": "e"}',
            "must be strings",
        ),
        (
            b'{"vm_id": "v", "subscription_id": "s", "resource_group": "g", "vm_name": "n", "event_id": "e",'
            b' "provisioning_waits": -1}',
            "provisioning_waits must be a non-negative integer",
        ),
        (
            json.dumps({**ITEM_FIELDS, "vm_id": "/subscriptions/x/resourceGroups/rg"}).encode(),
            "is not the id of the VM the item names",
        ),
        (
            json.dumps({**ITEM_FIELDS, "vm_name": "web-99"}).encode(),
            "is not the id of the VM the item names",
        ),
    ],
    ids=[
        "not JSON",
        "not UTF-8",
        "an array",
        "no fields",
        "wrong type",
        "negative waits",
        "not a VM id",
        "id and parts disagree",
    ],
)
def test_protect_vm_drops_a_malformed_message_with_the_reason(
    bench: NewVmBench,
    handlers: dict[str, Handler],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    reason: str,
) -> None:
    handlers["protect_vm"](func.QueueMessage(id="m2", body=body))  # returns: retrying cannot fix it

    [record] = logged(caplog, "dropped malformed work item")
    assert record.levelno == logging.ERROR
    assert record.message_id == "m2"  # type: ignore[attr-defined]
    assert reason in record.reason  # type: ignore[attr-defined]
    assert not bench.requests()


@pytest.mark.parametrize("valid", [True, False], ids=["work item", "garbage"])
def test_protect_vm_poison_logs_a_failed_outcome(
    bench: NewVmBench, handlers: dict[str, Handler], caplog: pytest.LogCaptureFixture, valid: bool
) -> None:
    vm = bench.create_vm("web-38")
    body = bench.work_item(vm).to_json() if valid else "garbage"

    handlers["protect_vm_poison"](func.QueueMessage(id="m3", body=body))

    [record] = logged(caplog, "protect_vm outcome")
    assert record.levelno == logging.ERROR
    assert (record.vm_id, record.action, record.result) == (  # type: ignore[attr-defined]
        vm if valid else "",
        "enable_protection",
        "failed",
    )
    assert "poison" in record.reason  # type: ignore[attr-defined]
    assert not bench.requests()
