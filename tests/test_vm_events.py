"""read_vm_write over events as the emulated subscription system topic publishes them, in both schemas.

Every event starts as one the emulator emitted for a VM created, updated, deleted or failed through
its compute backend; malformed ones are those events with one thing broken.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from backupwarden.domain.vm_events import Ignored, InvalidEvent, VmWritten, read_vm_write
from emulator import Emulator
from emulator.compute.models import ComputeBackend
from emulator.eventgrid.models import EventGridBackend

SUB = "44444444-4444-4444-8444-444444444444"
RESOURCE_GROUP = "RG-Events"  # mixed case on purpose: ARM keeps the case it was given
SCHEMAS = ("eventgrid", "cloudevents")
Event = dict[str, Any]


def vm_id(name: str) -> str:
    return named(name)


def publish(emulator: Emulator, schema: str) -> dict[str, list[Event]]:
    """Events of one VM's life (create pair, update, delete) and of a failed create, in `schema`."""
    grid = emulator.backend(EventGridBackend)
    grid.configure({"schema": schema})
    compute = emulator.backend(ComputeBackend)
    seen: dict[str, list[Event]] = {}

    def record(what: str, action: Callable[[], object]) -> None:
        before = len(grid.events())
        action()
        seen[what] = grid.events()[before:]

    record("create", lambda: compute.create_vm(SUB, RESOURCE_GROUP, "Web-05", "westeurope"))
    record("update", lambda: compute.update_vm(vm_id("Web-05"), tags={"env": "prod"}))
    record("delete", lambda: compute.delete_vm(vm_id("Web-05")))
    record(
        "failed",
        lambda: compute.create_vm(SUB, RESOURCE_GROUP, "web-06", "westeurope", provisioning_state="Failed"),
    )
    return seen


@pytest.fixture(params=SCHEMAS)
def events(request: pytest.FixtureRequest, emulator: Emulator) -> dict[str, list[Event]]:
    return publish(emulator, request.param)


def type_key(event: Event) -> str:
    return "eventType" if "eventType" in event else "type"


# --- accepted -----------------------------------------------------------------------------------
def test_the_create_pair_reads_as_the_same_vm_write(events: dict[str, list[Event]]) -> None:
    pair = events["create"]
    assert len(pair) == 2, "the emulator publishes a create as the duplicate pair Azure can send"
    first, second = (read_vm_write(event) for event in pair)
    assert isinstance(first, VmWritten) and isinstance(second, VmWritten)
    assert first.vm_id == vm_id("Web-05").lower()
    assert (first.subscription_id, first.resource_group, first.vm_name) == (SUB, RESOURCE_GROUP, "Web-05")
    assert [first.event_id, second.event_id] == [event["id"] for event in pair]
    assert first.correlation_id == pair[0]["data"]["correlationId"] != ""
    assert first.dedup_key == second.dedup_key, "the pair shares its correlationId, so it collapses"


def test_an_update_is_a_vm_write_of_its_own(events: dict[str, list[Event]]) -> None:
    create = read_vm_write(events["create"][0])
    update = read_vm_write(events["update"][0])
    assert isinstance(create, VmWritten) and isinstance(update, VmWritten)
    assert update.vm_id == create.vm_id
    assert update.dedup_key != create.dedup_key


def test_a_lower_cased_resource_uri_is_accepted(events: dict[str, list[Event]]) -> None:
    event = copy.deepcopy(events["create"][0])
    event["data"]["resourceUri"] = event["data"]["resourceUri"].lower()
    parsed = read_vm_write(event)
    assert isinstance(parsed, VmWritten)
    assert parsed.vm_id == vm_id("Web-05").lower()
    assert (parsed.resource_group, parsed.vm_name) == ("rg-events", "web-05")


def test_a_large_unrelated_data_field_does_not_matter(events: dict[str, list[Event]]) -> None:
    event = copy.deepcopy(events["create"][0])
    event["data"]["padding"] = "x" * (1024 * 1024)
    assert isinstance(read_vm_write(event), VmWritten)


# --- ignored, with the reason -------------------------------------------------------------------
def other_resource(event: Event, operation: str, resource_id: str) -> Event:
    event["data"]["operationName"] = operation
    event["data"]["resourceUri"] = resource_id
    return event


def retyped(event: Event, event_type: str) -> Event:
    event[type_key(event)] = event_type
    return event


STORAGE_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/st1"
)
IGNORED: list[tuple[str, str, Callable[[Event], Event], str]] = [
    ("delete", "delete", lambda e: e, "Microsoft.Resources.ResourceDeleteSuccess is not"),
    ("failed create", "failed", lambda e: e, "Microsoft.Resources.ResourceWriteFailure is not"),
    (
        "storage account write",
        "create",
        lambda e: other_resource(e, "Microsoft.Storage/storageAccounts/write", STORAGE_ID),
        "operation Microsoft.Storage/storageAccounts/write is not Microsoft.Compute/virtualMachines/write",
    ),
    (
        "VM extension write",
        "create",
        lambda e: other_resource(
            e, "Microsoft.Compute/virtualMachines/extensions/write", vm_id("Web-05") + "/extensions/ama"
        ),
        "operation Microsoft.Compute/virtualMachines/extensions/write is not",
    ),
    (
        "subscription validation",
        "create",
        lambda e: retyped(e, "Microsoft.EventGrid.SubscriptionValidationEvent"),
        "event type Microsoft.EventGrid.SubscriptionValidationEvent is not",
    ),
]


@pytest.mark.parametrize(
    ("source", "change", "reason"),
    [case[1:] for case in IGNORED],
    ids=[case[0] for case in IGNORED],
)
def test_other_events_are_ignored_with_the_reason(
    events: dict[str, list[Event]], source: str, change: Callable[[Event], Event], reason: str
) -> None:
    event = change(copy.deepcopy(events[source][0]))
    parsed = read_vm_write(event)
    assert isinstance(parsed, Ignored)
    assert parsed.event_id == event["id"]
    assert reason in parsed.reason


# --- malformed: rejected, with the reason --------------------------------------------------------
def without(key: str) -> Callable[[Event], Event]:
    def change(event: Event) -> Event:
        del event[key]
        return event

    return change


def with_field(key: str, value: Any) -> Callable[[Event], Event]:
    def change(event: Event) -> Event:
        event[key] = value
        return event

    return change


def with_data(key: str, value: Any) -> Callable[[Event], Event]:
    def change(event: Event) -> Event:
        if value is ...:
            del event["data"][key]
        else:
            event["data"][key] = value
        return event

    return change


def with_type(value: Any) -> Callable[[Event], Event]:
    def change(event: Event) -> Event:
        event[type_key(event)] = value
        return event

    return change


def without_type(event: Event) -> Event:
    del event[type_key(event)]
    return event


def data_as_json_text(event: Event) -> Event:
    event["data"] = json.dumps(event["data"])
    return event


def named(name: str, resource_group: str = RESOURCE_GROUP, subscription: str = SUB) -> str:
    provider = "providers/Microsoft.Compute/virtualMachines"
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/{provider}/{name}"


NOT_OBJECT = "'data' must be an object"
NOT_VM = "is not a virtual machine id"
MALFORMED: list[tuple[str, Callable[[Event], Event], str]] = [
    ("missing data", without("data"), NOT_OBJECT),
    ("data null", with_field("data", None), NOT_OBJECT),
    ("data as JSON text", data_as_json_text, NOT_OBJECT),
    ("data a list", with_field("data", [1, 2]), NOT_OBJECT),
    ("missing operationName", with_data("operationName", ...), "data.operationName must be a string"),
    ("operationName a number", with_data("operationName", 42), "data.operationName must be a string"),
    ("missing resourceUri", with_data("resourceUri", ...), "data.resourceUri must be a string"),
    ("resourceUri a list", with_data("resourceUri", [named("web-05")]), "data.resourceUri must be a string"),
    ("resourceUri of a storage account", with_data("resourceUri", STORAGE_ID), NOT_VM),
    ("resourceUri of a VM extension", with_data("resourceUri", named("web-05") + "/extensions/ama"), NOT_VM),
    (
        "resourceUri of a resource group",
        with_data("resourceUri", f"/subscriptions/{SUB}/resourceGroups/rg"),
        NOT_VM,
    ),
    ("resourceUri a URL", with_data("resourceUri", "https://management.azure.com" + named("web-05")), NOT_VM),
    ("subscription not a GUID", with_data("resourceUri", named("web-05", subscription="prod")), NOT_VM),
    ("space in the name", with_data("resourceUri", named("web 05")), NOT_VM),
    ("encoded slash in the name", with_data("resourceUri", named("web%2F05")), NOT_VM),
    ("query in the name", with_data("resourceUri", named("web-05?api-version=1")), NOT_VM),
    ("fragment in the name", with_data("resourceUri", named("web-05#x")), NOT_VM),
    ("newline in the name", with_data("resourceUri", named("web\n05")), NOT_VM),
    ("quote in the name", with_data("resourceUri", named("web'05")), NOT_VM),
    ("markup in the name", with_data("resourceUri", named("<script>")), NOT_VM),
    ("path traversal", with_data("resourceUri", named("..", resource_group="..")), NOT_VM),
    ("name ending in a period", with_data("resourceUri", named("web-05.")), NOT_VM),
    ("empty name", with_data("resourceUri", named("")), NOT_VM),
    ("name of 65 characters", with_data("resourceUri", named("v" * 65)), NOT_VM),
    (
        "resource group of 91 characters",
        with_data("resourceUri", named("web-05", resource_group="g" * 91)),
        NOT_VM,
    ),
    ("correlationId a number", with_data("correlationId", 7), "data.correlationId must be a string"),
    ("missing id", without("id"), "missing its 'id'"),
    ("empty id", with_field("id", ""), "missing its 'id'"),
    ("id a number", with_field("id", 12), "missing its 'id'"),
    ("missing event type", without_type, "missing eventType (Event Grid) or type (CloudEvents)"),
    ("event type a number", with_type(3), "missing eventType (Event Grid) or type (CloudEvents)"),
]


@pytest.mark.parametrize(
    ("change", "reason"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_events_are_rejected_with_the_reason(
    events: dict[str, list[Event]], change: Callable[[Event], Event], reason: str
) -> None:
    event = change(copy.deepcopy(events["create"][0]))
    with pytest.raises(InvalidEvent) as raised:
        read_vm_write(event)
    assert reason in str(raised.value)


@pytest.mark.parametrize("event", [[], "event", None, 42, [{"id": "1"}]], ids=repr)
def test_an_event_that_is_not_an_object_is_rejected(event: Any) -> None:
    with pytest.raises(InvalidEvent, match=f"an event must be a JSON object, not {type(event).__name__}"):
        read_vm_write(event)


def test_the_reason_quotes_at_most_a_little_of_a_huge_resource_uri(events: dict[str, list[Event]]) -> None:
    event = copy.deepcopy(events["create"][0])
    event["data"]["resourceUri"] = named("x" * (1024 * 1024))
    with pytest.raises(InvalidEvent, match=NOT_VM) as raised:
        read_vm_write(event)
    assert len(str(raised.value)) < 400
