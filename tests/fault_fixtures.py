"""What the fault matrix (tests/test_fault_matrix.py) shares: one small estate, one vault per matrix row,
kills at a chosen step of our own components, and the host's answer to a kill (a redelivery).

The estate: one subscription of VAULTS vaults with VMS_PER_VAULT VMs each, every one stuck in its initial
backup, on a clock that starts now at real speed (the functions read the wall clock), without the
`unkind` profile: each row sets the one fault it is about, on its own vault's paths, so rows do not
disturb each other. The functions are called as the host calls them (tests/unkind_fixtures.py).

A kill is a BaseException raised by a subclass of one of our classes that the composition root builds
(`Ledger`, `Protection`, `RecoveryServices`, `ActionRecorder`), set in its place through the
composition root's own names, as tests/outcome_fixtures.py's `KillSwitch` does: no handler of the app
runs after it. The host then delivers the message again once its visibility timeout has passed
(`survived_by_host`).

Storage down and back: `StorageGate` forwards the app's queue and table connections to Azurite and can
close its ports (connections refused, as when the account is unreachable) and open them again;
`StorageCut` closes it at a chosen step of a run, so the outage starts in the middle of a delivery.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from backupwarden import app as wiring
from backupwarden.adapters.azure.protection import EnabledProtection, Protection
from backupwarden.adapters.azure.recovery_services import RecoveryServices, TriggeredBackup, VaultRef
from backupwarden.adapters.storage.ledger import Claim, Ledger
from backupwarden.app import build_sweep_queue, forget_shared_pacers
from backupwarden.domain.records import Candidate, Outcome
from backupwarden.domain.vault_selection import VAULT_TAG
from backupwarden.flows.recorder import ActionRecorder
from backupwarden.flows.run_report import RunReport
from emulator import EmulatorServer
from emulator.generator import REGIONS, subscription_id
from tests.sweep_fixtures import vm_name
from tests.unkind_fixtures import Function, UnkindBench

VAULTS = 12
VMS_PER_VAULT = 3
TIMINGS = {  # every operation answers at once; a backup job ends a second after it starts
    "backup_job_s": 1,
    "backup_operation_s": 0,
    "refresh_containers_s": 0,
    "configure_operation_s": 0,
    "retry_after_s": 0,
}


def fault_scenario() -> dict[str, Any]:
    return {
        "clock": {"start": datetime.now(UTC).isoformat(), "scale": 1.0},
        "timings": dict(TIMINGS),
        "generate": {
            "subscriptions": 1,
            "vaults_per_subscription": VAULTS,
            "vms_per_vault": VMS_PER_VAULT,
            "stuck_percent": 100,
        },
    }


@contextlib.contextmanager
def fault_bench(server: EmulatorServer, storage: str) -> Iterator[UnkindBench]:
    """The module's bench: the estate loaded, no faults, the settings in the environment."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
                monkeypatch.delenv(name)
        bench = UnkindBench(server.emulator, server, storage)
        bench.load(fault_scenario())
        bench.use_env(monkeypatch)
        forget_shared_pacers()
        try:
            yield bench
        finally:
            forget_shared_pacers()
            bench.close()
            server.emulator.reset()


def candidates_by_vault(bench: UnkindBench) -> list[list[Candidate]]:
    """Discovery's candidates (the app's own), one list per vault, in vault order."""
    sweep = bench.sweep()
    found = sweep.discover(RunReport("discovery", False, bench.emulator.now()))
    assert found is not None and not found.failures, found
    grouped: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in found.candidates:
        grouped[candidate.vault_id.lower()].append(candidate)
    vaults = [grouped[vault] for vault in sorted(grouped)]
    assert len(vaults) == VAULTS and all(len(c) == VMS_PER_VAULT for c in vaults), vaults
    return vaults


def send_to_sweep_queue(bench: UnkindBench, bodies: list[str]) -> None:
    """Messages on the sweep queue, sent the way the planner sends them."""
    settings = bench.settings()
    queue = build_sweep_queue(settings, bench.clients(settings))
    assert queue is not None
    queue.ensure()
    assert queue.send_each(bodies) == [None] * len(bodies)


# --- new VMs -------------------------------------------------------------------------------------
def create_new_vms(bench: UnkindBench, names: list[str], vault: int) -> dict[str, str]:
    """New VMs (name -> lower-case id), created as a deployment creates them (their Event Grid events
    published), in the region of the generated vault numbered `vault`, tagged for it: the region has
    two generated vaults."""
    tags = {VAULT_TAG: f"vault-000-{vault:03d}"}
    location = REGIONS[vault % len(REGIONS)]
    subscription = subscription_id(0)
    return {
        name: bench.create_vm(name, location=location, subscription=subscription, tags=tags) for name in names
    }


def send_to_protect_queue(bench: UnkindBench, bodies: list[str]) -> None:
    """Messages on the protect queue, encoded as the app sends them (what `vm_written` enqueues)."""
    settings = bench.settings()
    queue = bench.clients(settings).work_queue(bench.protect_queue)
    for body in bodies:
        queue.send_message(body)


# --- kills ---------------------------------------------------------------------------------------
class Killed(BaseException):
    """The host ended the process at this step (timeout, scale-in, crash)."""


class HostRedelivers(Exception):
    """What the queue sees of a killed delivery: it was never deleted, so it comes back."""


def survived_by_host(function: Function) -> Function:
    """The function as the queue sees it: a killed delivery is delivered again later (QueueDrain
    redelivers a message whose function raised, with its dequeue count)."""

    def deliver(message: Any) -> Any:
        try:
            return function(message)
        except Killed as exc:
            raise HostRedelivers(str(exc)) from None

    return deliver


class KillSwitch:
    """Kills the process once, at `step`, for the VM named `vm`. `step` is one of STEPS."""

    def __init__(self, step: str, vm: str) -> None:
        self.step = step
        self.vm = vm.lower()
        self.fired = False
        self._lock = threading.Lock()

    def fire_for(self, step: str, vm_id_or_name: str) -> None:
        if step != self.step or vm_name(vm_id_or_name).lower() != self.vm:
            return
        with self._lock:
            if self.fired:
                return
            self.fired = True
        raise Killed(f"killed {step} of {self.vm}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        switch = self

        class LedgerThatDies(Ledger):
            def claim(self, vm_id: str, action: str, day: date, run_id: str, max_attempts: int) -> Claim:
                claim = super().claim(vm_id, action, day, run_id, max_attempts)
                switch.fire_for(AFTER_CLAIM, vm_id)
                return claim

            def claim_if_new(self, vm_id: str, action: str, day: date, run_id: str) -> Claim | None:
                claim = super().claim_if_new(vm_id, action, day, run_id)
                if claim is not None:
                    switch.fire_for(AFTER_CLAIM, vm_id)
                return claim

        class ProtectionThatDies(Protection):
            def enable(
                self, vault: VaultRef, vm_id: str, vm_resource_group: str, vm_name: str, policy: str
            ) -> EnabledProtection:
                enabled = super().enable(vault, vm_id, vm_resource_group, vm_name, policy)
                switch.fire_for(AFTER_PROTECT, vm_id)
                return enabled

        class RecoveryThatDies(RecoveryServices):
            def trigger_backup(
                self, vault: VaultRef, container: str, item: str, expiry: datetime
            ) -> TriggeredBackup:
                triggered = super().trigger_backup(vault, container, item, expiry)
                switch.fire_for(AFTER_TRIGGER, item.rsplit(";", 1)[-1])
                return triggered

        class RecorderThatDies(ActionRecorder):
            def record(self, outcomes: list[Outcome], *, source: str, dry_run: bool) -> int:
                for outcome in outcomes:
                    switch.fire_for(BEFORE_RECORD, outcome.vm_id or "-")
                return super().record(outcomes, source=source, dry_run=dry_run)

        monkeypatch.setattr(wiring, "Ledger", LedgerThatDies)
        monkeypatch.setattr(wiring, "Protection", ProtectionThatDies)
        monkeypatch.setattr(wiring, "RecoveryServices", RecoveryThatDies)
        monkeypatch.setattr(wiring, "ActionRecorder", RecorderThatDies)


AFTER_CLAIM = "after claim"  # the ledger's claim returned
AFTER_PROTECT = "after protection"  # the service took the protection PUT (its operation done)
AFTER_TRIGGER = "after trigger"  # the service took the "Backup now"
BEFORE_RECORD = "before record"  # the decisions were made, none written to the outbox yet
STEPS = (AFTER_CLAIM, AFTER_PROTECT, AFTER_TRIGGER, BEFORE_RECORD)


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """The calls started together on threads of their own (overlapping runs); their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # reported by the caller, which checks every result
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- storage down and back -----------------------------------------------------------------------
class Gate:
    """A TCP forwarder on loopback to one upstream port; `close()` refuses connections and cuts the
    open ones, `open()` listens on the same port again."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._lock = threading.Lock()
        self._links: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._serve(self._listener)

    def close(self) -> None:
        with self._lock:
            listener, links = self._listener, list(self._links)
            self._links.clear()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()
        for link in links:
            _close(link)

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the port is free again
        with self._lock:
            self._listener = listener
        self._serve(listener)

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            except OSError:
                return
            with self._lock:
                if listener is not self._listener:  # closed meanwhile: this connection is cut too
                    _close(client)
                    _close(upstream)
                    return
                self._links |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        for sock in (source, target):
            _close(sock)
            with self._lock:
                self._links.discard(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


_ENDPOINT = re.compile(r"(QueueEndpoint|TableEndpoint)=http://127\.0\.0\.1:(\d+)/")


class StorageGate:
    """Azurite's queue and table services behind gates: `connection_string` reaches them through the
    gates, `down()` makes them unreachable, `up()` reachable again (Azurite and its data never stop)."""

    def __init__(self, connection_string: str) -> None:
        ports = {service: int(port) for service, port in _ENDPOINT.findall(connection_string)}
        assert set(ports) == {"QueueEndpoint", "TableEndpoint"}, connection_string
        self._gates = {service: Gate(port) for service, port in ports.items()}
        self.connection_string = _ENDPOINT.sub(
            lambda m: f"{m[1]}=http://127.0.0.1:{self._gates[m[1]].port}/", connection_string
        )
        self.is_up = True

    def down(self) -> None:
        if self.is_up:
            self.is_up = False
            for gate in self._gates.values():
                gate.close()

    def up(self) -> None:
        if not self.is_up:
            self.is_up = True
            for gate in self._gates.values():
                gate.open()

    def close(self) -> None:
        self.down()


class StorageCut(KillSwitch):
    """Instead of killing the process at `step` for `vm`, storage goes down there; the run goes on."""

    def __init__(self, step: str, vm: str, gate: StorageGate) -> None:
        super().__init__(step, vm)
        self._gate = gate

    def fire_for(self, step: str, vm_id_or_name: str) -> None:
        if step != self.step or vm_name(vm_id_or_name).lower() != self.vm:
            return
        with self._lock:
            if self.fired:
                return
            self.fired = True
        self._gate.down()
