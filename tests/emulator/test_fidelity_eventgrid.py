"""The events the emulator publishes have the shape of the Event Grid spec examples.

Examples: eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01/examples/{event-grid-schema,
cloud-events-schema}/. The reference folder holds no spec examples for the subscriptions or the
compute (virtual machines) APIs, so those answers are held to the SDK models in test_compute.py instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from emulator import Emulator
from emulator.compute.models import ComputeBackend
from emulator.eventgrid.models import EventGridBackend
from tests.emulator.fidelity import assert_same_shape, load_example

SUB = "11111111-1111-4111-8111-111111111111"
VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01"
EXAMPLES = "eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01/examples"


def published(emulator: Emulator, schema: str, *, delete: bool) -> list[dict[str, Any]]:
    events = emulator.backend(EventGridBackend)
    events.configure({"schema": schema})
    compute = emulator.backend(ComputeBackend)
    compute.create_vm(SUB, "rg-web", "web-01", "westeurope", emit_events=not delete)
    if delete:
        compute.delete_vm(VM_ID)
    return events.events()


@pytest.mark.parametrize(
    ("schema", "folder"), [("eventgrid", "event-grid-schema"), ("cloudevents", "cloud-events-schema")]
)
def test_vm_write_event_has_the_shape_of_resource_write_success(
    emulator: Emulator, schema: str, folder: str
) -> None:
    example = load_example(f"{EXAMPLES}/{folder}/resource_write_success.json")

    emitted = published(emulator, schema, delete=False)

    assert len(emitted) == 2  # the duplicate pair of a create
    for event in emitted:
        assert_same_shape(example, event)


@pytest.mark.parametrize(
    ("schema", "folder"), [("eventgrid", "event-grid-schema"), ("cloudevents", "cloud-events-schema")]
)
def test_vm_delete_event_has_the_shape_of_resource_delete_success(
    emulator: Emulator, schema: str, folder: str
) -> None:
    example = load_example(f"{EXAMPLES}/{folder}/resource_delete_success.json")

    (event,) = published(emulator, schema, delete=True)

    assert_same_shape(example, event)
