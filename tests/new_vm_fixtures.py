"""What the new-VM tests share: the sweep's bench (emulator over HTTPS, Azurite, own ledger table) plus
an own work queue and outbox table, VMs created through the emulator's compute backend (which
publishes their Event Grid events), and requests counted per route and VM.

The emulated clock runs at FAST_SCALE and operations answer without Retry-After. Container refresh
and configuration finish by their first poll unless a test calls `service_takes_its_time()` (the
demo's 10 s + 35 s, polled 202 until done). conftest.py registers `new_vm_bench` for every module.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.storage.queue import QueueClient, QueueMessage

from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.recovery_services import VaultRef
from backupwarden.adapters.storage.ledger import Ledger, LedgerRecord
from backupwarden.app import build_protect_vm
from backupwarden.domain.vm_events import VmWritten, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import ProtectVm
from emulator import Emulator, EmulatorServer
from emulator.compute.models import ComputeBackend
from emulator.core.realism import LoggedRequest
from emulator.eventgrid.models import EventGridBackend
from emulator.recoveryservices.urls import ITEM
from tests.sweep_fixtures import SweepBench, demo_scenario

FAST_SCALE = 600.0  # emulated seconds per real second
PROD = "11111111-1111-4111-8111-111111111111"  # demo: rsv-prod-weu (westeurope), rsv-prod-neu (northeurope)
VAULTS = f"/subscriptions/{PROD}/resourceGroups/{{}}/providers/Microsoft.RecoveryServices/vaults/{{}}"
WEU_VAULT = VAULTS.format("rg-backup-weu", "rsv-prod-weu")
NEU_VAULT = VAULTS.format("rg-backup-neu", "rsv-prod-neu")
PROTECT_PUT = ("PUT", ITEM)  # (method, route template) of "enable protection"
BACKUP_POST = ("POST", f"{ITEM}/backup")  # of "Backup now"


def fast_demo_scenario() -> dict[str, Any]:
    """The demo estate with the clock at FAST_SCALE, polls answered without Retry-After, and container
    refresh and configuration done by their first poll (`NewVmBench.service_takes_its_time` undoes that)."""
    scenario = demo_scenario()
    scenario.setdefault("clock", {})["scale"] = FAST_SCALE
    timings = scenario.setdefault("timings", {})
    timings.update(retry_after_s=0, refresh_containers_s=0, configure_operation_s=0)
    timings["backup_job_s"] = 10 * 3600  # a backup job stays InProgress for a minute of real time
    return scenario


def vm_id_of(subscription: str, resource_group: str, name: str) -> str:
    provider = "providers/Microsoft.Compute/virtualMachines"
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/{provider}/{name}"


def grid_event(event: dict[str, Any]) -> func.EventGridEvent:
    """What the Functions host hands `vm_written` for an event in either schema (CloudEvents mapped)."""
    event_type = event.get("eventType", event.get("type"))
    raw_time = event.get("eventTime", event.get("time"))
    return func.EventGridEvent(
        id=str(event.get("id", "")),
        data=event.get("data"),  # type: ignore[arg-type]  # the host passes whatever the event carried
        topic=str(event.get("topic", event.get("source", ""))),
        subject=str(event.get("subject", "")),
        event_type=str(event_type or ""),
        event_time=datetime.fromisoformat(str(raw_time).replace("Z", "+00:00")) if raw_time else None,
        data_version=str(event.get("dataVersion", "")),
    )


@dataclass
class NewVmBench(SweepBench):
    protect_queue: str = field(default_factory=lambda: f"protect-{uuid.uuid4().hex[:12]}")
    outbox_table: str = field(default_factory=lambda: f"outbox{uuid.uuid4().hex[:12]}")
    _raw_queues: list[QueueClient] = field(default_factory=list)

    # --- the estate ------------------------------------------------------------------------------
    def load(self, scenario: dict[str, Any]) -> None:
        scenario = copy.deepcopy(scenario)
        scenario.setdefault("clock", {}).setdefault("scale", FAST_SCALE)
        super().load(scenario)

    def create_vm(
        self,
        name: str,
        *,
        location: str = "westeurope",
        resource_group: str = "rg-new",
        subscription: str = PROD,
        tags: dict[str, str] | None = None,
        provisioning_state: str = "Succeeded",
    ) -> str:
        """A new VM, as a deployment creates it (its events published); returns its lower-case id."""
        vm = self.compute.create_vm(
            subscription, resource_group, name, location, tags=tags, provisioning_state=provisioning_state
        )
        return vm.id.lower()

    def service_takes_its_time(self) -> None:
        """Container refresh and configuration take the demo's emulated seconds (polled 202 until done)."""
        demo = demo_scenario()["timings"]
        with self.emulator.lock:
            timings = self.emulator.estate.timings
            timings.refresh_containers_s = demo["refresh_containers_s"]
            timings.configure_operation_s = demo["configure_operation_s"]

    @property
    def compute(self) -> ComputeBackend:
        return self.emulator.backend(ComputeBackend)

    @property
    def event_grid(self) -> EventGridBackend:
        return self.emulator.backend(EventGridBackend)

    def events_for(self, vm_id: str) -> list[dict[str, Any]]:
        """Every event the system topic published about the VM, oldest first."""
        return [
            event
            for event in self.event_grid.events()
            if str(event["data"].get("resourceUri", "")).lower() == vm_id.lower()
        ]

    def work_item(self, vm_id: str) -> NewVmWorkItem:
        """The work item `vm_written` makes of the VM's first event."""
        parsed = read_vm_write(self.events_for(vm_id)[0])
        assert isinstance(parsed, VmWritten), parsed
        return NewVmWorkItem.from_event(parsed)

    # --- the app ------------------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(
            **{
                "BACKUPWARDEN_PROTECT_QUEUE": self.protect_queue,
                "BACKUPWARDEN_OUTBOX_TABLE": self.outbox_table,
                "BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S": "20",
                **overrides,
            }
        )

    def worker(self, dry_run: bool | None = None, **overrides: str) -> ProtectVm:
        """A worker as `protect_vm` builds it (own SDK clients), on the emulator's clock."""
        settings = self.settings(**overrides)
        return build_protect_vm(settings, self.clients(settings), dry_run=dry_run, now=self.emulator.now)

    # --- reading back -------------------------------------------------------------------------
    def calls(self, method_and_route: tuple[str, str], vm_id: str | None = None) -> list[LoggedRequest]:
        """Requests on one route (e.g. PROTECT_PUT), optionally only those naming the VM's item."""
        method, route = method_and_route
        found = [e for e in self.requests() if e.method == method and e.route == route]
        if vm_id is None:
            return found
        _, item = item_names(vm_id.split("/")[4], vm_id.rsplit("/", 1)[-1])
        return [e for e in found if f"/protecteditems/{item}".lower() in e.path.lower()]

    def changing_writes(self) -> list[LoggedRequest]:
        """Write-kind requests that change state: all but backupStatus, a query ARM counts as a write."""
        return [
            e for e in self.requests() if e.kind == "write" and not e.path.lower().endswith("/backupstatus")
        ]

    def backup_client(self, subscription: str = PROD) -> RecoveryServicesBackupClient:
        return self.clients(self.settings()).backup(subscription)

    def protected_item(self, vm_id: str, vault_id: str = WEU_VAULT) -> dict[str, Any]:
        """The VM's protected item as the Recovery Services API returns it (wire JSON)."""
        vault = VaultRef.parse(vault_id)
        container, item = item_names(vm_id.split("/")[4], vm_id.rsplit("/", 1)[-1])
        found = self.backup_client(vault.subscription_id).protected_items.get(
            vault.name, vault.resource_group, "Azure", container, item
        )
        return dict(found.as_dict())

    def job(self, job_id: str, vault_id: str = WEU_VAULT) -> dict[str, Any]:
        vault = VaultRef.parse(vault_id)
        found = self.backup_client(vault.subscription_id).job_details.get(
            vault.name, vault.resource_group, job_id
        )
        return dict(found.as_dict())

    def ledger(self) -> Ledger:
        ledger = Ledger(self.clients(self.settings()).ledger_table(), clock=self.emulator.now)
        ledger.ensure_table()
        return ledger

    def ledger_record(self, vm_id: str, action: str) -> LedgerRecord | None:
        return self.ledger().record(vm_id, action, self.emulator.now().date())

    def raw_queue(self, suffix: str = "") -> QueueClient:
        """The work queue without decode policy: what is on the wire."""
        client = QueueClient.from_connection_string(self.storage, self.protect_queue + suffix)
        self._raw_queues.append(client)
        return client

    def visible_bodies(self) -> list[str]:
        """The decoded (base64, as the Functions host reads it) body of every visible message."""
        try:
            peeked = self.raw_queue().peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [base64.b64decode(message.content).decode("utf-8") for message in peeked]

    def receive(self) -> list[QueueMessage]:
        """Dequeue every visible message (decoded), as the queue trigger would."""
        queue = self.clients(self.settings()).work_queue(self.protect_queue)
        return list(queue.receive_messages(max_messages=32, visibility_timeout=300))

    def close(self) -> None:
        for client in self._raw_queues:
            client.close()
        with (
            QueueClient.from_connection_string(self.storage, self.protect_queue) as queue,
            contextlib.suppress(ResourceNotFoundError),
        ):
            queue.delete_queue()
        with TableServiceClient.from_connection_string(self.storage) as service:
            service.delete_table(self.outbox_table)
        super().close()


def queue_message(message: QueueMessage) -> func.QueueMessage:
    """A dequeued message as the Functions host hands it to a queue trigger."""
    return func.QueueMessage(id=message.id, body=str(message.content), pop_receipt=message.pop_receipt)


@pytest.fixture
def new_vm_bench(emulator: Emulator, emulator_server: EmulatorServer, azurite: str) -> Iterator[NewVmBench]:
    """The bench with the demo estate loaded at FAST_SCALE."""
    bench = NewVmBench(emulator, emulator_server, azurite)
    bench.load(fast_demo_scenario())
    yield bench
    bench.close()
