"""ARM ids compared the way ARM compares them: case-insensitive for ASCII letters only.

`str.lower()` turns 'İ' into two characters and the Kelvin sign into 'k'; IGNORECASE lets 'ſ' match
's'. Neither is how ARM compares ids, so neither may decide a key or an equality.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.adapters.storage.ledger import partition_key_for
from backupwarden.domain.arm_ids import arm_key, resource_group_of, same_arm_id, subscription_of
from backupwarden.domain.vm_events import VmWritten, parse_vm_id, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from tests.new_vm_fixtures import BACKUP_POST, PROD, PROTECT_PUT, NewVmBench, grid_event, queue_message

KELVIN = "\u212a"  # K
LONG_S = "\u017f"  # ſ
DOTTED_I = "\u0130"  # İ
VM_ID = f"/subscriptions/{PROD}/resourceGroups/rg-new/providers/Microsoft.Compute/virtualMachines/web-k"


def test_arm_key_lower_cases_ascii_letters_only() -> None:
    assert arm_key("RG-New/WEB") == "rg-new/web"
    assert arm_key(f"rg-{DOTTED_I}zmir") == f"rg-{DOTTED_I}zmir"
    assert arm_key(f"web-{KELVIN}{LONG_S}") == f"web-{KELVIN}{LONG_S}"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arm_key_keeps_the_length_and_every_non_ascii_character(text: str) -> None:
    key = arm_key(text)
    assert len(key) == len(text)
    assert all(k == t or (t.isascii() and k == t.lower()) for k, t in zip(key, text, strict=True))
    assert same_arm_id(text, text.upper() if text.isascii() else text)


def test_same_arm_id_ignores_ascii_case_only() -> None:
    assert same_arm_id(VM_ID, VM_ID.upper())
    assert not same_arm_id(VM_ID.replace("web-k", f"web-{KELVIN}"), VM_ID)
    assert not same_arm_id(f"rg-{DOTTED_I}zmir", "rg-i\u0307zmir")


def test_the_id_pattern_does_not_let_long_s_or_kelvin_stand_for_ascii_letters() -> None:
    assert parse_vm_id(VM_ID.upper()) is not None, "ASCII case does not matter"
    assert parse_vm_id(VM_ID.replace("/subscriptions/", f"/{LONG_S}ubscriptions/")) is None
    assert parse_vm_id(VM_ID.replace("/Microsoft.Compute/", f"/Micro{LONG_S}oft.Compute/")) is None
    assert parse_vm_id(VM_ID.replace("resourceGroups", "resourceGroups".replace("s", LONG_S))) is None
    kelvin_sub = VM_ID.replace("/subscriptions/1", "/subscriptions/" + KELVIN)
    assert parse_vm_id(kelvin_sub) is None


def test_a_name_with_the_kelvin_sign_has_its_own_ledger_key() -> None:
    kelvin = VM_ID.replace("web-k", f"web-{KELVIN}")
    assert partition_key_for(kelvin) != partition_key_for(VM_ID)
    assert partition_key_for(VM_ID.upper()) == partition_key_for(VM_ID)


def test_a_work_item_for_a_group_with_a_dotted_capital_i_is_valid() -> None:
    group = f"rg-{DOTTED_I}zmir"
    vm_id = f"/subscriptions/{PROD}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/web-1"
    event = {
        "id": "event-1",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "data": {"operationName": "Microsoft.Compute/virtualMachines/write", "resourceUri": vm_id},
    }
    written = read_vm_write(event)
    assert isinstance(written, VmWritten)
    item = NewVmWorkItem.from_event(written)

    assert same_arm_id(item.vm_id, vm_id)
    assert NewVmWorkItem.from_json(item.to_json()) == item


# --- through the real path: Event Grid trigger, queue on Azurite, worker on the emulator ---------------
Handler = Callable[[Any], None]


@pytest.fixture(scope="module")
def handlers() -> Iterator[dict[str, Handler]]:
    import function_app

    app = importlib.reload(function_app).app
    yield {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    importlib.reload(function_app)


def test_a_vm_in_a_group_with_a_dotted_capital_i_is_enqueued_and_protected(
    new_vm_bench: NewVmBench, handlers: dict[str, Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in new_vm_bench.env().items():
        monkeypatch.setenv(name, value)
    vm = new_vm_bench.create_vm("web-40", resource_group=f"rg-{DOTTED_I}zmir")

    handlers["vm_written"](grid_event(new_vm_bench.events_for(vm)[0]))
    [message] = new_vm_bench.receive()
    handlers["protect_vm"](queue_message(message))

    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT)] == [202]
    assert [e.status for e in new_vm_bench.calls(BACKUP_POST)] == [202]
    exact_id = vm.replace("rg-i\u0307zmir", f"rg-{DOTTED_I}zmir")  # the bench hands back str.lower()
    assert new_vm_bench.protected_item(exact_id)["properties"]["protectionState"] == "IRPending"


def test_the_subscription_and_resource_group_of_an_id() -> None:
    vm = "/subscriptions/ABCD-1/resourceGroups/RG-App/providers/Microsoft.Compute/virtualMachines/web"
    assert subscription_of(vm) == "abcd-1"
    assert resource_group_of(vm) == "RG-App"  # as written: names are shown, keys compared
    assert resource_group_of("/subscriptions/abcd-1/RESOURCEGROUPS/rg") == "rg"
    assert resource_group_of("/subscriptions/abcd-1") == ""
    assert resource_group_of("/subscriptions/abcd-1/resourceGroups") == ""
    assert subscription_of("/providers/Microsoft.Management/managementGroups/x") == ""
