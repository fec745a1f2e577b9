"""A delivery killed after it acted, then redelivered: its decision is stated, not lost or hidden (issue 15).

A kill is a BaseException raised by a subclass of one of our own components (`RecoveryServices`,
`ActionRecorder`), set in the composition root's place: no handler of the app runs after it. The
redelivery is the same work (same sweep run, same queue message) built afresh.

Through the real SDK clients against the emulator and Azurite; the clock stands still
(`remediation_scenario`), so a job list lag set in the scenario lasts the whole test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as HostQueueMessage

from backupwarden import app as wiring
from backupwarden.adapters.azure.recovery_services import RecoveryServices, TriggeredBackup, VaultRef
from backupwarden.adapters.storage.ledger import LedgerStatus
from backupwarden.app import build_sweep
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Candidate, Outcome, Result
from backupwarden.flows.backup_now import LEDGER_ACTION
from backupwarden.flows.recorder import ActionRecorder
from backupwarden.flows.run_report import RunReport
from tests.new_vm_fixtures import PROTECT_PUT
from tests.remediation_fixtures import RemediationBench, remediation_scenario
from tests.test_lost_backup_answer import API_03, WEB_01, backup_claim, backup_jobs, post_statuses

Handler = Callable[..., Any]  # the functions function_app registers
LAGGING_JOB_LIST = {"job_list_lag_s": 120}  # the clock stands still: the list never shows the job


class Killed(BaseException):
    """The host ended the process here."""


def kill_after_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies right after the service took a "Backup now"."""

    class RecoveryThatDies(RecoveryServices):
        def trigger_backup(
            self, vault: VaultRef, container: str, item: str, expiry: datetime
        ) -> TriggeredBackup:
            super().trigger_backup(vault, container, item, expiry)
            raise Killed("after the trigger")

    monkeypatch.setattr(wiring, "RecoveryServices", RecoveryThatDies)


def kill_before_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies with its decisions made, none written to the outbox."""

    class RecorderThatDies(ActionRecorder):
        def record(self, outcomes: list[Outcome], *, source: str, dry_run: bool) -> int:
            raise Killed("before the record")

    monkeypatch.setattr(wiring, "ActionRecorder", RecorderThatDies)


KILLS = pytest.mark.parametrize(
    "kill", [kill_after_trigger, kill_before_record], ids=["after-trigger", "before-record"]
)


# --- the sweep ------------------------------------------------------------------------------------
def sweep_delivery(
    bench: RemediationBench, run_id: str, candidate: Candidate, *, redelivered: bool
) -> Outcome:
    """One delivery of a sweep work item holding `candidate`, as the queue worker handles it."""
    settings = bench.settings()
    sweep = build_sweep(settings, bench.clients(settings), now=bench.emulator.now)
    return sweep.handler(run_id).handle(candidate, redelivered=redelivered)


def test_a_sweep_redelivery_keeps_the_trigger_its_killed_delivery_sent_before_the_job_list_shows_it(
    remediation_bench: RemediationBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    scenario = remediation_scenario("web-01")
    scenario["recoveryservices"] = dict(LAGGING_JOB_LIST)
    bench.load(scenario)
    candidate = next(c for c in stuck_candidates(bench) if c.vm_id == WEB_01)
    with monkeypatch.context() as dying:
        kill_after_trigger(dying)
        with pytest.raises(Killed):
            sweep_delivery(bench, "run-1", candidate, redelivered=False)
    assert backup_claim(bench, WEB_01).status is LedgerStatus.IN_PROGRESS

    outcome = sweep_delivery(bench, "run-1", candidate, redelivered=True)

    assert len(backup_jobs(bench, "web-01")) == 1
    assert post_statuses(bench, "web-01") == [202, 400], "the repeat met the running backup"
    assert (outcome.result, outcome.run_id) == (Result.TRIGGERED, "run-1"), outcome
    assert "taken as ours (the job list does not show its job yet)" in outcome.reason
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.attempts) == (LedgerStatus.COMPLETED, 1), claim


def test_a_sweep_redelivery_after_the_killed_deliverys_backup_ended_triggers_nothing_again(
    remediation_bench: RemediationBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("web-01"))
    candidate = next(c for c in stuck_candidates(bench) if c.vm_id == WEB_01)
    with monkeypatch.context() as dying:
        kill_after_trigger(dying)
        with pytest.raises(Killed):
            sweep_delivery(bench, "run-1", candidate, redelivered=False)
    bench.advance_past_jobs()  # the redelivery comes after the backup ended

    outcome = sweep_delivery(bench, "run-1", candidate, redelivered=True)

    [job_id] = backup_jobs(bench, "web-01")
    assert post_statuses(bench, "web-01") == [202]
    assert (outcome.result, outcome.job_id) == (Result.TRIGGERED, job_id), outcome
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id) == (LedgerStatus.COMPLETED, job_id)


def stuck_candidates(bench: RemediationBench) -> list[Candidate]:
    """Discovery's candidates, the app's own."""
    settings = bench.settings()
    sweep = build_sweep(settings, bench.clients(settings), now=bench.emulator.now)
    found = sweep.discover(RunReport("discovery", False, bench.emulator.now()))
    assert found is not None and not found.failures, found
    return list(found.candidates)


# --- new VMs: the protect queue's protect_vm -------------------------------------------------------
@pytest.fixture(scope="module")
def handlers() -> Iterator[dict[str, Handler]]:
    import importlib

    import function_app

    app = importlib.reload(function_app).app
    yield {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    importlib.reload(function_app)


def deliver(handler: Handler, bench: RemediationBench, vm_id: str, message_id: str, count: int) -> None:
    body = bench.work_item(vm_id).to_json()
    handler(HostQueueMessage(id=message_id, body=body, dequeue_count=count))


def recorded(bench: RemediationBench, vm_id: str) -> list[tuple[str, str, str]]:
    """The VM's new-VM decisions in the outbox, shipped and de-duplicated as Log Analytics shows them."""
    bench.ship()
    rows = [r for r in bench.landed(AUTOMATION_ACTIONS.table) if r["VmId"] == vm_id]
    latest = {str(r["RecordId"]): r for r in rows}
    return sorted((str(r["Result"]), str(r["RunId"]), str(r["JobId"] or "")) for r in latest.values())


@KILLS
def test_a_protect_vm_redelivery_records_the_protection_its_killed_delivery_made(
    remediation_bench: RemediationBench,
    handlers: dict[str, Handler],
    monkeypatch: pytest.MonkeyPatch,
    kill: Callable[[pytest.MonkeyPatch], None],
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("web-01", wall_clock=True))  # the functions read the wall clock
    bench.use_env(monkeypatch)
    vm = bench.create_vm("web-09")
    with monkeypatch.context() as dying:
        kill(dying)
        with pytest.raises(Killed):
            deliver(handlers["protect_vm"], bench, vm, "m-1", 1)

    deliver(handlers["protect_vm"], bench, vm, "m-1", 2)  # the queue redelivers the message
    deliver(handlers["protect_vm"], bench, vm, "m-2", 1)  # the VM's other write event: a duplicate

    [job_id] = backup_jobs(bench, "web-09")
    assert [e.status for e in bench.calls(PROTECT_PUT, vm)] == [202]
    assert recorded(bench, vm) == [("already_protected", "m-2", ""), ("protected", "m-1", job_id)]
    claim = bench.ledger_record(vm, LEDGER_ACTION)
    assert claim is not None and (claim.status, claim.job_id) == (LedgerStatus.COMPLETED, job_id), claim


# --- remediation: the remediation queue's remediate -----------------------------------------------
@KILLS
def test_a_remediate_redelivery_records_the_retry_its_killed_delivery_made(
    remediation_bench: RemediationBench,
    handlers: dict[str, Handler],
    monkeypatch: pytest.MonkeyPatch,
    kill: Callable[[pytest.MonkeyPatch], None],
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("api-03", wall_clock=True))  # the functions read the wall clock
    bench.use_env(monkeypatch, BACKUPWARDEN_RETRY_BACKOFF="0")
    payload = bench.failure_alert(API_03)
    [failed_job] = backup_jobs(bench, "api-03")
    bench.deliver(handlers["alert_webhook"], payload)
    [message] = bench.queue().receive_messages(max_messages=32, visibility_timeout=300)
    body = str(message.content)
    with monkeypatch.context() as dying:
        kill(dying)
        with pytest.raises(Killed):
            handlers["remediate"](HostQueueMessage(id=message.id, body=body, dequeue_count=1))

    handlers["remediate"](HostQueueMessage(id=message.id, body=body, dequeue_count=2))

    [retry_job] = [job for job in backup_jobs(bench, "api-03") if job != failed_job]
    bench.ship()
    decisions = {str(r["RecordId"]): r for r in bench.actions("Alert") if r["VmId"] == API_03}
    assert [(r["Result"], r["RunId"], r["JobId"]) for r in decisions.values()] == [
        ("triggered", message.id, retry_job)
    ]
