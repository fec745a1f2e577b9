"""VM write events as Event Grid queues them (infra/subscription/events.bicep: endpointType StorageQueue)
and `vm_event_queued` reads them: one Event Grid schema event per message, base64-encoded, which the
queue trigger decodes as host.json's messageEncoding says before the function sees the body.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.vm_events import VmWritten, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.recorder import INVALID_WORK_ITEM
from tests.new_vm_fixtures import BACKUP_POST, PROTECT_PUT, NewVmBench, queue_message

ROOT = Path(__file__).resolve().parents[1]
Handler = Callable[[Any], None]
Event = dict[str, Any]


@pytest.fixture(scope="module")
def handlers() -> Iterator[dict[str, Handler]]:
    """The functions the deployed entry point registers, by name (a fresh app: it indexes only once)."""
    import function_app

    app = importlib.reload(function_app).app
    yield {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    importlib.reload(function_app)


@pytest.fixture
def bench(new_vm_bench: NewVmBench, monkeypatch: pytest.MonkeyPatch) -> Iterator[NewVmBench]:
    for name, value in new_vm_bench.env().items():
        monkeypatch.setenv(name, value)
    yield new_vm_bench


@pytest.fixture
def event_queue(bench: NewVmBench) -> Iterator[QueueClient]:
    """A queue on Azurite standing for backupwarden-vm-events, with no encode or decode policy."""
    queue = QueueClient.from_connection_string(bench.storage, f"vm-events-{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    yield queue
    queue.delete_queue()
    queue.close()


def queued_by_event_grid(queue: QueueClient, body: bytes) -> func.QueueMessage:
    """Event Grid writes the event base64-encoded; the host dequeues it and decodes it (messageEncoding
    base64) into the body the function gets."""
    queue.send_message(base64.b64encode(body).decode("ascii"))
    (message,) = queue.receive_messages(max_messages=1, visibility_timeout=300)
    return func.QueueMessage(
        id=message.id,
        body=base64.b64decode(message.content),
        pop_receipt=message.pop_receipt,
    )


def event_json(event: Event) -> bytes:
    return json.dumps(event).encode("utf-8")


def recorded(bench: NewVmBench) -> list[dict[str, Any]]:
    outbox = Outbox(bench.clients(bench.settings()).outbox_table(), clock=bench.emulator.now)
    return [record.row for record in outbox.pending(AUTOMATION_ACTIONS.stream)]


def test_the_host_decodes_queue_messages_as_base64() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["messageEncoding"] == "base64"


def test_an_event_as_event_grid_queues_it_becomes_one_work_item(
    bench: NewVmBench, handlers: dict[str, Handler], event_queue: QueueClient
) -> None:
    vm = bench.create_vm("web-80")
    event = bench.events_for(vm)[0]
    assert "eventType" in event, "Event Grid schema, as the event subscription delivers it"

    handlers["vm_event_queued"](queued_by_event_grid(event_queue, event_json(event)))

    parsed = read_vm_write(event)
    assert isinstance(parsed, VmWritten)
    assert bench.visible_bodies() == [NewVmWorkItem.from_event(parsed).to_json()]
    assert not bench.requests(), "the intake only validates and enqueues: no Azure call"


MALFORMED: list[tuple[str, Callable[[Event], bytes], str, bool]] = [
    # (case, the body on the queue, part of the reason, whether the record names the VM)
    ("no data", lambda e: event_json({**copy.deepcopy(e), "data": None}), "'data' must be an object", True),
    (
        "not a VM",
        lambda e: event_json(
            {**e, "data": {**e["data"], "resourceUri": "/subscriptions/x/resourceGroups/rg"}}
        ),
        "is not a virtual machine id",
        True,  # the subject still names the VM
    ),
    ("not JSON", lambda e: b'{"id": "1", "eventType": ', "not a JSON event", False),
    ("not UTF-8", lambda e: b"\xff\xfe{}", "not a JSON event", False),
    ("an array", lambda e: event_json([e]), "must be a JSON object", False),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("body", "reason", "vm_known"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_queued_event_is_one_failed_record_and_not_retried(
    bench: NewVmBench,
    handlers: dict[str, Handler],
    event_queue: QueueClient,
    body: Callable[[Event], bytes],
    reason: str,
    vm_known: bool,
) -> None:
    vm = bench.create_vm("web-81")
    event = bench.events_for(vm)[0]

    handlers["vm_event_queued"](queued_by_event_grid(event_queue, body(event)))  # returns: no redelivery

    [row] = recorded(bench)
    assert (row["Result"], row["ErrorCode"], row["Action"]) == (
        "failed",
        INVALID_WORK_ITEM,
        "enable_protection",
    )
    assert row["Reason"].startswith("rejected event: ") and reason in row["Reason"]
    assert row["VmId"] == (arm_key(vm) if vm_known else "")
    assert bench.visible_bodies() == []


def test_a_duplicate_queued_event_protects_the_vm_once(
    bench: NewVmBench, handlers: dict[str, Handler], event_queue: QueueClient
) -> None:
    vm = bench.create_vm("web-82")
    events = bench.events_for(vm)
    for event in [*events, events[0]]:  # the pair one create emits, and a redelivery of the first
        handlers["vm_event_queued"](queued_by_event_grid(event_queue, event_json(event)))
    messages = bench.receive()
    assert len(messages) == len(events) + 1, (
        "each queued event becomes a work item; the worker collapses them"
    )

    for message in messages:
        handlers["protect_vm"](queue_message(message))

    assert [e.status for e in bench.calls(PROTECT_PUT, vm)] == [202]
    assert [e.status for e in bench.calls(BACKUP_POST, vm)] == [202]


def test_an_event_the_queue_gave_up_on_is_one_failed_record_for_its_vm(
    bench: NewVmBench, handlers: dict[str, Handler], event_queue: QueueClient
) -> None:
    vm = bench.create_vm("web-83")
    event = bench.events_for(vm)[0]

    handlers["vm_event_queued_poison"](queued_by_event_grid(event_queue, event_json(event)))

    [row] = recorded(bench)
    assert (row["Result"], row["Action"], row["Source"]) == ("failed", "enable_protection", "EventGrid")
    assert "gave up" in row["Reason"] and row["VmId"] == arm_key(vm)
    assert bench.visible_bodies() == []
