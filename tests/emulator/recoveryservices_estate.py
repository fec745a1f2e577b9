"""A small estate for the Recovery Services tests: one vault, one policy, VMs in its region."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.pipeline import PipelineResponse

from emulator import Emulator
from emulator.estate import BackupPolicy, ProtectedItem, Subscription, Vault, VirtualMachine

SUB = "00000000-0000-0000-0000-0000000000a1"
OTHER_SUB = "00000000-0000-0000-0000-0000000000b2"
VAULT_RG = "rg-backup"
VM_RG = "rg-app"
REGION = "westeurope"
# Mid-morning UTC, so that no test crosses midnight by accident.
START = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


@dataclass
class World:
    vault: Vault
    policy: BackupPolicy
    vms: list[VirtualMachine]


@contextmanager
def frozen_clock(emulator: Emulator) -> Iterator[None]:
    """The emulated clock stopped at START (tests move it with emulator.advance); restored afterwards."""
    with emulator.lock:
        emulator.clock.set(START, scale=0)
    try:
        yield
    finally:
        with emulator.lock:
            emulator.clock.set(emulator.clock.now(), scale=1.0)


def build_world(emulator: Emulator, vm_count: int = 3) -> World:
    with emulator.lock:
        estate = emulator.estate
        estate.timings.retry_after_s = 0
        estate.add_subscription(Subscription(SUB, "production"))
        vault = estate.add_vault(Vault(SUB, VAULT_RG, "vault-weu", REGION, tags={"env": "prod"}))
        policy = estate.add_policy(BackupPolicy(vault.id, "DefaultPolicy"))
        vms = [estate.add_vm(VirtualMachine(SUB, VM_RG, f"vm-{index}", REGION)) for index in range(vm_count)]
    return World(vault, policy, vms)


def protect_directly(emulator: Emulator, world: World, vm: VirtualMachine) -> ProtectedItem:
    """An item in IRPending, as if protection had been enabled earlier."""
    with emulator.lock:
        item = ProtectedItem(vault_id=world.vault.id, vm=vm, policy_id=world.policy.id, configured_at=START)
        emulator.estate.protected_items[vm.id.lower()] = item
    return item


def response_headers(
    pipeline_response: PipelineResponse[Any, Any], _body: Any, _headers: Any
) -> dict[str, str]:
    """`cls=` callback of SDK operations: the raw response headers."""
    return dict(pipeline_response.http_response.headers)


def response_status(pipeline_response: PipelineResponse[Any, Any], _body: Any, _headers: Any) -> int:
    """`cls=` callback of SDK operations: the HTTP status."""
    return int(pipeline_response.http_response.status_code)


def last_segment(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
