"""A sweep near its time budget starts no more candidates and hands the rest on; the CLI records as it goes.

The functions run as the host calls them, against the emulator (HTTPS) and Azurite. The run's
`Deadline` reads a fake monotonic clock that stands still for the first N candidates started and
then jumps past the budget, so "near the end" falls at a known candidate. Draining the queue
afterwards must finish every VM with 0 duplicate triggers and exactly one decision recorded per VM.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage as HostQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

import functions.sweep as sweep_functions
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.adapters.storage.queues import SweepQueue
from backupwarden.app import forget_shared_pacers, run_deadline
from backupwarden.cli.main import main as cli_main
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import Deadline
from backupwarden.flows.sweep.candidates import ACTION, SWEEP_RUN_ACTION
from backupwarden.flows.sweep.fanout import SweepFanout
from backupwarden.flows.sweep.messages import SweepWorkItem
from backupwarden.settings import Settings
from tests.sweep_fixtures import BACKUP_POST, SweepBench, vm_name
from tests.test_records_as_made import RunKilled, decoded, die_after_triggers, use_app_settings
from tests.test_records_as_made import functions as host_functions

VMS = 12
STARTED_IN_BUDGET = 5


class JumpingClock:
    """Monotonic seconds standing at 0 for the deadline's start and the first `checks` readings
    (one per candidate about to start), then a day later: past any budget."""

    def __init__(self, checks: int) -> None:
        self._readings_left = checks + 1
        self._lock = threading.Lock()  # the run's threads read it at once

    def __call__(self) -> float:
        with self._lock:
            self._readings_left -= 1
            return 0.0 if self._readings_left >= 0 else 86_400.0


def estate(vms: int) -> dict[str, Any]:
    """Every VM stuck, configured 3 h before the clock start; a backup job runs for three hours."""
    return {
        "clock": {"start": datetime.now(UTC).isoformat()},
        "timings": {"retry_after_s": 0, "backup_job_s": 3 * 3600},
        "generate": {
            "subscriptions": 1,
            "vaults_per_subscription": 1,
            "vms_per_vault": vms,
            "stuck_percent": 100,
        },
    }


class Budgeted:
    """The bench with its own outbox table and sweep queue, its settings as the app settings."""

    def __init__(self, bench: SweepBench) -> None:
        self.bench = bench
        self.outbox_table = f"outbox{uuid.uuid4().hex[:12]}"
        self.queue_name = f"sweep-{uuid.uuid4().hex[:10]}"

    def env(self, inline_max: int, **overrides: str) -> dict[str, str]:
        return self.bench.env(
            BACKUPWARDEN_OUTBOX_TABLE=self.outbox_table,
            BACKUPWARDEN_SWEEP_QUEUE=self.queue_name,
            BACKUPWARDEN_SWEEP_INLINE_MAX=str(inline_max),
            **overrides,
        )

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env(inline_max=100, **overrides))

    def rows(self, action: str) -> list[dict[str, Any]]:
        """Every outbox row of `action`, oldest first (not de-duplicated: a VM recorded twice shows twice)."""
        outbox = Outbox(self.bench.clients(self.settings()).outbox_table())
        outbox.ensure_table()  # a run that recorded nothing did not create it
        rows = [p.row for p in outbox.pending(AUTOMATION_ACTIONS.stream) if p.row["Action"] == action]
        return sorted(rows, key=lambda row: row["TimeGenerated"])

    def decisions_by_vm(self) -> dict[str, list[str]]:
        """VM name -> the result of every decision recorded for it."""
        recorded: dict[str, list[str]] = {}
        for row in self.rows(ACTION):
            recorded.setdefault(vm_name(row["VmId"]), []).append(row["Result"])
        return recorded

    def accepted_posts(self) -> Counter[str]:
        return Counter(
            match["vm"]
            for entry in self.bench.requests()
            if entry.method == "POST" and entry.status == 202 and (match := BACKUP_POST.search(entry.path))
        )

    def queue(self) -> QueueClient:
        return QueueClient.from_connection_string(self.bench.storage, self.queue_name)

    def queued_items(self) -> list[SweepWorkItem]:
        """The work items waiting on the sweep queue (peeked: left where they are)."""
        with self.queue() as queue:
            return [SweepWorkItem.from_json(decoded(m.content)) for m in queue.peek_messages(max_messages=32)]

    def drain(self) -> None:
        """Every message through `sweep_worker` as the host delivers it, deleted when it returns."""
        with self.queue() as queue:
            while messages := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
                for message in messages:
                    body = decoded(message.content)
                    host_functions()["sweep_worker"](
                        HostQueueMessage(id=message.id, body=body, dequeue_count=1)
                    )
                    queue.delete_message(message)

    def close(self) -> None:
        with TableServiceClient.from_connection_string(self.bench.storage) as service:
            service.delete_table(self.outbox_table)
        for suffix in ("", "-poison"):
            queue = QueueClient.from_connection_string(self.bench.storage, self.queue_name + suffix)
            with queue, contextlib.suppress(ResourceNotFoundError):
                queue.delete_queue()


@pytest.fixture
def budgeted(sweep_bench: SweepBench) -> Iterator[Budgeted]:
    forget_shared_pacers()
    bench = Budgeted(sweep_bench)
    yield bench
    bench.close()
    forget_shared_pacers()


def budget_nearly_spent_after(monkeypatch: pytest.MonkeyPatch, started: int) -> None:
    """The next function runs' deadlines are near their end once `started` candidates have started."""

    def deadline(settings: Settings) -> Deadline:
        return Deadline.start(settings.time_budget, JumpingClock(started))

    monkeypatch.setattr(sweep_functions, "run_deadline", deadline, raising=False)


def assert_every_vm_triggered_once_and_decided_once(budgeted: Budgeted, triggered: int) -> None:
    posted = budgeted.accepted_posts()
    assert sum(posted.values()) == triggered and set(posted.values()) == {1}, posted
    decisions = budgeted.decisions_by_vm()
    assert len(decisions) == VMS, decisions
    assert all(len(results) == 1 for results in decisions.values()), decisions
    assert {vm for vm, results in decisions.items() if results == [Result.TRIGGERED.value]} == set(posted)


def test_an_inline_timer_run_near_its_budget_hands_the_rest_on_and_the_queue_finishes_them(
    budgeted: Budgeted, monkeypatch: pytest.MonkeyPatch
) -> None:
    budgeted.bench.load(estate(VMS))
    use_app_settings(monkeypatch, budgeted.env(inline_max=100))  # handled within the timer run
    budget_nearly_spent_after(monkeypatch, STARTED_IN_BUDGET)

    host_functions()["sweep"](TimerRequest(past_due=False))

    assert sum(budgeted.accepted_posts().values()) == STARTED_IN_BUDGET
    (run_record,) = budgeted.rows(SWEEP_RUN_ACTION)
    handed_on = VMS - STARTED_IN_BUDGET
    assert f"{handed_on} handed on" in run_record["Reason"], run_record
    items = budgeted.queued_items()
    assert {item.run_id for item in items} == {run_record["RunId"]}
    assert sum(len(item.candidates) for item in items) == handed_on
    assert {item.cap for item in items} == {None}, "the plan cannot reach the cap: no counting"

    budgeted.drain()

    assert_every_vm_triggered_once_and_decided_once(budgeted, triggered=VMS)


def test_candidates_an_inline_run_hands_on_stay_within_the_runs_cap(
    budgeted: Budgeted, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 8
    budgeted.bench.load(estate(VMS))
    use_app_settings(monkeypatch, budgeted.env(inline_max=100, BACKUPWARDEN_MAX_TRIGGERS_PER_RUN=str(cap)))
    budget_nearly_spent_after(monkeypatch, STARTED_IN_BUDGET)

    host_functions()["sweep"](TimerRequest(past_due=False))
    assert {item.cap for item in budgeted.queued_items()} == {cap - STARTED_IN_BUDGET}
    budgeted.drain()

    assert_every_vm_triggered_once_and_decided_once(budgeted, triggered=cap)
    skipped = [r for r in budgeted.rows(ACTION) if r["Result"] == Result.SKIPPED.value]
    assert len(skipped) == VMS - cap


def test_a_worker_near_its_budget_hands_the_rest_of_its_item_on_under_the_same_cap(
    budgeted: Budgeted, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 8
    budgeted.bench.load(estate(VMS))
    use_app_settings(monkeypatch, budgeted.env(inline_max=0, BACKUPWARDEN_MAX_TRIGGERS_PER_RUN=str(cap)))
    host_functions()["sweep"](TimerRequest(past_due=False))  # fanned out: one work item of every VM
    with budgeted.queue() as queue:
        (message,) = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
        budget_nearly_spent_after(monkeypatch, STARTED_IN_BUDGET)

        host_functions()["sweep_worker"](
            HostQueueMessage(id=message.id, body=decoded(message.content), dequeue_count=1)
        )
        queue.delete_message(message)  # the host deletes a message whose function returned

    assert sum(budgeted.accepted_posts().values()) == STARTED_IN_BUDGET
    original = SweepWorkItem.from_json(decoded(message.content))
    (handed_on,) = budgeted.queued_items()
    assert (handed_on.run_id, handed_on.cap) == (original.run_id, cap)
    assert len(handed_on.candidates) == VMS - STARTED_IN_BUDGET

    monkeypatch.setattr(sweep_functions, "run_deadline", run_deadline)  # the real budget again
    budgeted.drain()

    assert_every_vm_triggered_once_and_decided_once(budgeted, triggered=cap)


def run_with_deadline(budgeted: Budgeted, queue: SweepQueue | None) -> tuple[list[Outcome], Outcome]:
    """An inline run of every VM, its deadline near its end after STARTED_IN_BUDGET candidates."""
    settings = budgeted.settings()
    sweep = budgeted.bench.sweep()
    recorded: list[Outcome] = []
    fanout = SweepFanout(sweep, queue, inline_max=100)
    deadline = Deadline.start(settings.time_budget, JumpingClock(STARTED_IN_BUDGET))
    planned = fanout.run(record=recorded.extend, deadline=deadline)
    return recorded, planned.run_record()


def test_without_a_queue_the_candidates_not_started_are_recorded_skipped_naming_the_budget(
    budgeted: Budgeted,
) -> None:
    budgeted.bench.load(estate(VMS))

    recorded, run_record = run_with_deadline(budgeted, queue=None)

    results = Counter(outcome.result for outcome in recorded)
    assert results == {Result.TRIGGERED: STARTED_IN_BUDGET, Result.SKIPPED: VMS - STARTED_IN_BUDGET}
    assert len({outcome.vm_id for outcome in recorded}) == VMS
    skipped = [outcome for outcome in recorded if outcome.result is Result.SKIPPED]
    assert all("BACKUPWARDEN_TIME_BUDGET" in outcome.reason for outcome in skipped), skipped
    assert run_record.result is Result.COMPLETED


def test_a_hand_on_that_cannot_be_enqueued_is_recorded_failed_naming_the_budget(budgeted: Budgeted) -> None:
    budgeted.bench.load(estate(VMS))
    clients = budgeted.bench.clients(budgeted.settings())
    unusable = SweepQueue(clients.work_queue("Not_A_Queue"), clients.work_queue("Not_A_Queue-poison"))

    recorded, run_record = run_with_deadline(budgeted, queue=unusable)

    failed = [outcome for outcome in recorded if outcome.result is Result.FAILED]
    assert len(failed) == VMS - STARTED_IN_BUDGET
    assert all("BACKUPWARDEN_TIME_BUDGET" in outcome.reason for outcome in failed), failed
    assert len({outcome.vm_id for outcome in recorded}) == VMS
    assert run_record.result is Result.PARTIAL


def die_at_the_first_message_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drain dies when it settles its first work item (its candidates handled, not yet reported)."""

    def dying_delete(self: SweepQueue, *args: Any, **kwargs: Any) -> None:
        raise RunKilled("killed at a work item's delete")

    monkeypatch.setattr(SweepQueue, "delete", dying_delete)


@pytest.mark.parametrize(
    ("inline_max", "triggers"), [(100, STARTED_IN_BUDGET), (0, VMS)], ids=["inline", "drained"]
)
def test_a_cli_sweep_killed_part_way_keeps_the_record_of_every_trigger_it_made(
    budgeted: Budgeted, monkeypatch: pytest.MonkeyPatch, inline_max: int, triggers: int
) -> None:
    budgeted.bench.load(estate(VMS))
    use_app_settings(monkeypatch, budgeted.env(inline_max=inline_max))
    if inline_max:
        die_after_triggers(monkeypatch, survived=triggers)
    else:  # one work item of every VM, drained here
        die_at_the_first_message_delete(monkeypatch)

    with pytest.raises(RunKilled):
        cli_main(["sweep", "--workers", "1"])

    posted = budgeted.accepted_posts()
    assert sum(posted.values()) == triggers
    decisions = budgeted.decisions_by_vm()
    assert {vm: results for vm, results in decisions.items() if vm in posted} == {
        vm: [Result.TRIGGERED.value] for vm in posted
    }
