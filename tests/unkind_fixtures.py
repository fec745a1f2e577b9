"""What the end-to-end tests under the emulator's `unkind` profile share (tests/test_unkind_end_to_end.py).

One estate for the whole module: the demo estate plus a generated vault pair of stuck VMs, with
`realism.profile: unkind` (lower-case headers, 429 storms, 5xx bursts, lost answers, signed operation
URLs, Retry-After 60, job-list and Resource Graph lag, Log Analytics ingestion lag). The clock starts
at the wall clock, which the functions read, and runs at real speed; `advance()` moves it past a lag.
The faults are re-seeded after the load, so the random storms and lost answers do not depend on the
tests that ran before in the same session.

The functions are called as the host calls them (`get_user_function()`, real trigger objects), and
`QueueDrain` delivers queue messages the way the host does: a message whose function raised is
delivered again with its dequeue count, and after the last delivery goes to the poison queue.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage as HostQueueMessage  # the class the host's converter builds
from azure.storage.queue import QueueClient

from backupwarden.app import forget_shared_pacers
from backupwarden.flows.sweep.fanout import MAX_DELIVERIES
from emulator import EmulatorServer
from emulator.core.realism import Fault, Faults
from emulator.estate import BackupJob
from emulator.generator import subscription_id
from tests.remediation_fixtures import RemediationBench
from tests.sweep_fixtures import demo_scenario, triggered_names

SEED = 1313
GENERATED = {"subscriptions": 1, "vaults_per_subscription": 2, "vms_per_vault": 15, "stuck_percent": 100}
TIMINGS = {"refresh_containers_s": 1, "configure_operation_s": 2, "backup_operation_s": 0}

Function = Callable[[Any], Any]


def unkind_scenario() -> dict[str, Any]:
    """The demo estate and 30 generated stuck VMs, starting now at real speed, under `unkind`."""
    scenario = demo_scenario()
    scenario["clock"] = {"start": datetime.now(UTC).isoformat(), "scale": 1.0}
    scenario["timings"].update(TIMINGS)  # the demo's 41-minute backup jobs stay
    scenario["realism"] = {"profile": "unkind"}  # the demo's own `faults: []` would replace the profile's
    scenario["generate"] = dict(GENERATED)
    return scenario


def functions() -> dict[str, Function]:
    """The functions the deployed entry point registers, by name, from a freshly indexed app."""
    import function_app

    app = importlib.reload(function_app).app
    return {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}


@dataclass
class UnkindBench(RemediationBench):
    """Every flow's queues and tables of its own, the settings in the environment as the host sets them."""

    sweep_queue: str = field(default_factory=lambda: f"sweep-{uuid.uuid4().hex[:10]}")

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(
            **{
                "BACKUPWARDEN_SWEEP_QUEUE": self.sweep_queue,
                "BACKUPWARDEN_SWEEP_INLINE_MAX": "2",  # the plan fans out through the sweep queue
                "BACKUPWARDEN_HTTP_RETRY_TOTAL": "5",  # the app's default (the other benches use 2)
                "BACKUPWARDEN_PROVISIONING_RECHECK_S": "1",
                **overrides,
            }
        )

    def reseed(self, seed: int = SEED) -> None:
        """The profile's faults with a random source of their own, so this module's draws repeat."""
        with self.emulator.lock:
            faults = self.emulator.faults.list()
            self.emulator.faults = Faults(seed)
            self.emulator.faults.set(faults)

    def lose_answers(self, path_regex: str, method: str, count: int = 1) -> None:
        """The next `count` matching writes are performed and their answers lost (ahead of the profile's)."""
        fault = Fault(path_regex, method=method, lose_answer=True, remaining=count)
        with self.emulator.lock:
            self.emulator.faults.set([fault, *self.emulator.faults.list()])

    def expected_triggers(self) -> set[str]:
        """VM names the sweep must trigger, from the scenario and the emulator's estate, not the app."""
        with self.emulator.lock:
            generated = {
                item.vm.name
                for item in self.emulator.estate.protected_items.values()
                if item.protection_state == "IRPending" and item.vm.subscription_id == subscription_id(0)
            }
        return triggered_names(demo_scenario()) | generated

    def jobs_of(self, operation: str, since: datetime) -> Counter[str]:
        """VM name -> jobs of `operation` the service started since `since` (its own state)."""
        with self.emulator.lock:
            jobs: list[BackupJob] = list(self.emulator.estate.jobs.values())
        return Counter(job.vm.name for job in jobs if job.operation == operation and job.start_time >= since)

    def statuses(self) -> Counter[int]:
        return Counter(entry.status for entry in self.requests())

    def close(self) -> None:
        for suffix in ("", "-poison"):
            with (
                QueueClient.from_connection_string(self.storage, self.sweep_queue + suffix) as queue,
                contextlib.suppress(ResourceNotFoundError),
            ):
                queue.delete_queue()
        super().close()


@contextlib.contextmanager
def unkind_bench(server: EmulatorServer, storage: str) -> Iterator[UnkindBench]:
    """The bench for a module: the estate loaded, the faults re-seeded, the settings in the environment."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
                monkeypatch.delenv(name)
        shared_faults = server.emulator.faults  # the session's, put back for the modules after this one
        bench = UnkindBench(server.emulator, server, storage)
        bench.load(unkind_scenario())
        bench.reseed()
        bench.use_env(monkeypatch)
        forget_shared_pacers()
        try:
            yield bench
        finally:
            forget_shared_pacers()
            bench.close()
            server.emulator.faults = shared_faults
            server.emulator.reset()


@dataclass
class DrainResult:
    settled: int = 0
    redelivered: int = 0
    poisoned: int = 0


class QueueDrain:
    """Deliver every message of a queue to its function as the Functions host does, until none is left.

    A message whose function raised becomes visible again and is delivered with its new dequeue count;
    after MAX_DELIVERIES (host.json's maxDequeueCount) it moves to `<queue>-poison`, whose function
    gets it. Messages are handled `workers` at a time, as a host instance takes a batch.
    """

    def __init__(self, storage: str, queue: str, function: Function, poison: Function, workers: int = 4):
        self._storage = storage
        self._queue = queue
        self._function = function
        self._poison = poison
        self._workers = workers

    def drain(self, max_rounds: int = 200) -> DrainResult:
        result = DrainResult()
        with (
            QueueClient.from_connection_string(self._storage, self._queue) as queue,
            QueueClient.from_connection_string(self._storage, f"{self._queue}-poison") as poison,
            ThreadPoolExecutor(max_workers=self._workers) as pool,
        ):
            for _ in range(max_rounds):
                try:
                    batch = list(queue.receive_messages(max_messages=32, visibility_timeout=120))
                    waiting = queue.get_queue_properties().approximate_message_count
                except ResourceNotFoundError:
                    return result
                if not batch and not waiting:
                    return result
                if not batch:  # a message sent with a visibility delay (a recheck) is not due yet
                    time.sleep(0.2)
                    continue
                for done in pool.map(lambda m: self._deliver(queue, poison, m), batch):
                    setattr(result, done, getattr(result, done) + 1)
        raise AssertionError(f"queue {self._queue} still had messages after {max_rounds} rounds")

    def _deliver(self, queue: QueueClient, poison: QueueClient, message: Any) -> str:
        body = base64.b64decode(str(message.content)).decode("utf-8")
        delivery = HostQueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
        )
        try:
            self._function(delivery)
        except Exception:
            if message.dequeue_count < MAX_DELIVERIES:
                queue.update_message(message, pop_receipt=message.pop_receipt, visibility_timeout=0)
                return "redelivered"
            with contextlib.suppress(Exception):
                poison.create_queue()
            poison.send_message(message.content)
            queue.delete_message(message)
            self._poison(HostQueueMessage(id=message.id, body=body, dequeue_count=1))
            return "poisoned"
        queue.delete_message(message)
        return "settled"


def copy_of(payload: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(payload)
