"""Job outcomes and automation decisions shipped to Log Analytics: through the real SDK clients against the
emulator (Logs Ingestion, Log Analytics query, Resource Graph, Recovery Services) and Azurite (ledger and
outbox tables). None lost, none sent twice after a success, in TimeGenerated order, odd data bounded."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.functions.timer import TimerRequest  # the concrete class the host's timer converter builds

import function_app
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.app import build_outcome_shipping
from backupwarden.cli import main as cli
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_records import (
    MAX_FIELD_CHARS,
    TRUNCATED,
    Attribution,
    FinishedJob,
    job_outcome_row,
)
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, COVERAGE, FINISHED_JOB_STATUSES, JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import Deadline
from backupwarden.flows.new_vm.event_batch import handle_events
from backupwarden.flows.outcomes.collector import FIRST_RUN_LOOKBACK, WATERMARK
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.estate import BackupJob, VirtualMachine
from tests.new_vm_fixtures import PROD, WEU_VAULT, vm_id_of
from tests.outcome_fixtures import (
    KillSwitch,
    OutcomeBench,
    ProcessKilled,
    open_outcome_bench,
    ship_in_batches_of,
)
from tests.sweep_fixtures import demo_at_wall_clock
from tests.test_cli import cli_env, run_cli

OVERLAP = timedelta(hours=1)  # the default BACKUPWARDEN_JOBS_OVERLAP
JOB_COLUMNS = "RecordId, JobId, Operation, Status, TriggeredBy, AutomationRunId, Attempt, VmName"


@pytest.fixture
def bench(emulator: Emulator, emulator_server: EmulatorServer, azurite: str) -> Iterator[OutcomeBench]:
    yield from open_outcome_bench(emulator, emulator_server, azurite)


def finished_since(jobs: dict[str, BackupJob], since: datetime) -> dict[str, BackupJob]:
    return {
        job_id: job
        for job_id, job in jobs.items()
        if job.status in FINISHED_JOB_STATUSES and job.end_time is not None and job.end_time > since
    }


# --- every finished job, once, attributed ----------------------------------------------------------
def test_every_finished_job_lands_once_attributed_to_what_started_it(bench: OutcomeBench) -> None:
    before = bench.jobs()
    sweep = bench.run()
    new_vm = bench.create_vm("web-05", tags={"env": "prod", "backupwarden:policy": "EnhancedPolicy"})
    events = handle_events(
        bench.events_for(new_vm), bench.worker(), dry_run=False, recheck_s=0, now=bench.emulator.now
    )
    assert [o.result for o in events.outcomes] == [Result.PROTECTED]
    decisions = bench.record(sweep.outcomes, source="Timer") + bench.record(events.outcomes, source="Queue")
    bench.emulator.advance(bench.emulator.estate.timings.backup_job_s + 60)  # every triggered job ends
    ship_at = bench.emulator.now()

    report = bench.ship(now=lambda: ship_at)

    after = bench.jobs()
    expected = finished_since(after, ship_at - FIRST_RUN_LOOKBACK - OVERLAP)
    new_vm_jobs = {i for i, job in after.items() if job.vm.id.lower() == new_vm}
    sweep_jobs = set(after) - set(before) - new_vm_jobs
    # the sweep sends its POSTs alone: one new job per VM it triggered, credited to it below by the ledger
    triggered = [o.vm_id.lower() for o in sweep.outcomes if o.result is Result.TRIGGERED]
    assert sorted(after[i].vm.id.lower() for i in sweep_jobs) == sorted(triggered)
    assert {after[i].operation for i in new_vm_jobs} == {"ConfigureBackup", "Backup"}

    def attribution(job_id: str) -> tuple[str, str, int]:
        if job_id in sweep_jobs:
            return "Sweep", sweep.run_id, 1
        if job_id in new_vm_jobs:
            return "NewVm", events.run_id, 1
        return ("Schedule" if after[job_id].operation == "Backup" else "Manual"), "", 0

    rows = bench.query(f"{JOB_OUTCOMES.table} | project {JOB_COLUMNS}")
    assert Counter(r["RecordId"] for r in rows) == Counter(i.lower() for i in expected)
    assert {r["JobId"]: (r["TriggeredBy"], r["AutomationRunId"], r["Attempt"]) for r in rows} == {
        i: attribution(i) for i in expected
    }
    assert {r["JobId"]: (r["Operation"], r["Status"], r["VmName"]) for r in rows} == {
        i: (job.operation, job.status, job.vm.name) for i, job in expected.items()
    }
    assert Counter(r["TriggeredBy"] for r in rows).keys() == {"Sweep", "NewVm", "Schedule", "Manual"}
    actions = bench.query(f"{AUTOMATION_ACTIONS.table} | project RecordId, RunId, Source, JobId")
    assert len(actions) == decisions == len(sweep.outcomes) + len(events.outcomes)
    assert len({a["RecordId"] for a in actions}) == len(actions)
    assert Counter(a["Source"] for a in actions) == {"Timer": len(sweep.outcomes), "Queue": 1}
    assert {a["JobId"] for a in actions if a["RunId"] == events.run_id} == {events.outcomes[0].job_id}
    assert report.jobs_found == report.jobs_added == len(expected)
    assert report.watermark == max(job.end_time for job in expected.values() if job.end_time)
    assert bench.watermark() == report.watermark


def test_rerunning_rereads_the_overlap_and_sends_nothing_twice(bench: OutcomeBench) -> None:
    sweep = bench.run()
    bench.record(sweep.outcomes)
    bench.emulator.advance(bench.emulator.estate.timings.backup_job_s + 60)
    first = bench.ship()
    calls = len(bench.uploads())

    again = bench.ship()

    assert again.jobs_found > 0  # the overlap before the watermark was read again
    assert again.jobs_added == 0
    assert [r.upload_calls for r in again.results] == [0, 0, 0]
    assert len(bench.uploads()) == calls
    assert again.watermark == first.watermark
    for table in (JOB_OUTCOMES.table, AUTOMATION_ACTIONS.table):
        counted = bench.query(f"{table} | summarize n = count() by RecordId | where n > 1")
        assert counted == []
    assert len(bench.landed()) == first.jobs_added
    assert len(bench.landed(AUTOMATION_ACTIONS.table)) == len(sweep.outcomes)


# --- ingestion outage, then recovery ----------------------------------------------------------------
def sweep_and_finish(bench: OutcomeBench) -> list[Outcome]:
    """The sweep triggers the stuck VMs, its decisions go to the outbox, and every triggered job ends."""
    sweep = bench.run()
    bench.record(sweep.outcomes)
    bench.emulator.advance(bench.emulator.estate.timings.backup_job_s + 60)
    return sweep.outcomes


def ids_in_order(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["RecordId"]) for r in rows]


def assert_in_time_order(rows: list[dict[str, Any]]) -> None:
    times = [r["TimeGenerated"] for r in rows]
    assert times == sorted(times)


def add_late_job(bench: OutcomeBench, ended: datetime) -> BackupJob:
    """A finished job Resource Graph shows only now (it lags the service), older than what already waits."""
    with bench.emulator.lock:
        estate = bench.emulator.estate
        vm = next(vm for vm in estate.vms.values() if vm.name == "app-01")
        job = BackupJob(WEU_VAULT, vm, "Backup", ended - timedelta(minutes=30), "Completed", ended)
        return estate.add_job(job)


@pytest.mark.parametrize(("status", "retry_after_s"), [(503, None), (429, 1)])
def test_outage_of_three_runs_then_every_record_arrives_once_in_time_order(
    bench: OutcomeBench, monkeypatch: pytest.MonkeyPatch, status: int, retry_after_s: int | None
) -> None:
    outcomes = sweep_and_finish(bench)
    ship_in_batches_of(monkeypatch, 4096)  # several upload calls per stream
    # Retries off: one run makes one failing call (the job stream; the actions stream is not tried then).
    bench.emulator.faults.add(
        Fault(r"^/dataCollectionRules/", status, method="POST", remaining=3, retry_after_s=retry_after_s)
    )

    during = [bench.ship(BACKUPWARDEN_HTTP_RETRY_TOTAL="0")]
    oldest_waiting = next(iter(bench.outbox().pending(JOB_OUTCOMES.stream))).row["TimeGenerated"]
    late = add_late_job(bench, oldest_waiting - timedelta(minutes=1))
    during += [bench.ship(BACKUPWARDEN_HTTP_RETRY_TOTAL="0") for _ in range(2)]

    assert [[r.stopped is not None for r in run.results] for run in during] == [[True, True, True]] * 3
    assert [sum(r.shipped for r in run.results) for run in during] == [0, 0, 0]
    assert during[0].jobs_added > 0
    assert [run.jobs_added for run in during[1:]] == [1, 0]  # the rest already waits in the outbox
    assert [run.watermark for run in during] == [None] * 3
    assert bench.watermark() is None
    assert bench.landed() == bench.landed(AUTOMATION_ACTIONS.table) == []

    after = bench.ship(BACKUPWARDEN_HTTP_RETRY_TOTAL="0")

    assert all(r.complete for r in after.results)
    calls = sum(r.upload_calls for r in after.results)
    assert calls > 2
    assert [e.status for e in bench.uploads()] == [status] * 3 + [204] * calls
    jobs = bench.landed()
    assert len(jobs) == len(set(ids_in_order(jobs))) == during[0].jobs_added + 1 == after.results[0].shipped
    assert ids_in_order(jobs)[0] == late.job_id  # in its TimeGenerated place, not last in
    assert_in_time_order(jobs)
    actions = bench.landed(AUTOMATION_ACTIONS.table)
    assert Counter((a["RunId"], a["VmId"], a["Action"]) for a in actions) == Counter(
        (o.run_id, o.vm_id, o.action) for o in outcomes
    )
    assert len(set(ids_in_order(actions))) == len(actions)
    assert_in_time_order(actions)
    assert after.watermark == max(r["TimeGenerated"] for r in jobs)
    assert bench.watermark() == after.watermark
    assert list(bench.outbox().pending(JOB_OUTCOMES.stream)) == []


# --- killed between a successful upload and its bookkeeping ---------------------------------------
def test_killed_after_an_upload_loses_nothing_and_resends_only_that_batch(
    bench: OutcomeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_and_finish(bench)
    ship_in_batches_of(monkeypatch, 4096)
    switch = KillSwitch(kill_on=2)
    switch.install(monkeypatch)

    with pytest.raises(ProcessKilled):
        bench.ship()

    first, cut = switch.uploaded
    waiting = ids_in_order([p.row for p in bench.outbox().pending(JOB_OUTCOMES.stream)])
    assert ids_in_order(bench.landed()) == first + cut
    assert set(cut) <= set(waiting) and not set(first) & set(waiting)  # nothing dropped
    assert bench.watermark() is None

    report = bench.ship()  # the next run, a new process: this uploader no longer dies

    assert all(r.complete for r in report.results)
    landed = Counter(ids_in_order(bench.landed()))
    assert {i for i, n in landed.items() if n > 1} == set(cut)  # at least once: that batch, twice
    assert set(landed) == set(first) | set(waiting)
    deduped = bench.query(load_kql("dedupe_job_outcomes"))
    assert sorted(str(r["RecordId"]) for r in deduped) == sorted(landed)
    assert bench.watermark() is not None
    assert bench.ship().results[0].upload_calls == 0  # never again after the bookkeeping
    assert Counter(ids_in_order(bench.landed())) == landed


# --- a run near the end of its time budget starts no upload ----------------------------------------
def test_a_run_near_its_time_budget_starts_no_upload_and_the_next_run_ships_the_rest(
    bench: OutcomeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = sweep_and_finish(bench)
    ship_in_batches_of(monkeypatch, 4096)  # several upload calls per stream
    settings = bench.settings()
    ticks = iter(range(0, 10_000, 150))  # each reading of the run's clock 150 s later than the last
    deadline = Deadline.start(timedelta(minutes=7), lambda: float(next(ticks)))
    # start 0; before batch 1: 150 s (270 s left), batch 2: 300 s (120 s), batch 3: 450 s (nothing left)
    assert settings.call_timeout == timedelta(seconds=105)

    cut = build_outcome_shipping(settings, bench.clients(settings), now=bench.emulator.now).run(deadline)

    jobs, actions, _coverage = cut.results
    assert (jobs.shipped > 0, jobs.upload_calls, jobs.out_of_time, jobs.stopped) == (True, 2, True, None)
    assert (actions.upload_calls, actions.out_of_time) == (0, True)
    assert cut.watermark is None and bench.watermark() is None  # not every collected job shipped yet
    record = cut.run_record()
    assert record.result is Result.COMPLETED
    assert "the rest waits for the next run (BACKUPWARDEN_TIME_BUDGET nearly spent)" in record.reason
    assert len(bench.landed()) == jobs.shipped

    after = bench.ship()

    assert all(r.complete for r in after.results)
    landed = ids_in_order(bench.landed())
    assert len(landed) == len(set(landed)) == jobs.shipped + after.results[0].shipped
    assert_in_time_order(bench.landed())
    actions_landed = bench.landed(AUTOMATION_ACTIONS.table)
    assert Counter((a["RunId"], a["VmId"], a["Action"]) for a in actions_landed) == Counter(
        (o.run_id, o.vm_id, o.action) for o in outcomes
    )
    assert after.watermark is not None


# --- limits: long fields and odd characters are bounded, never a rejected batch ------------------
ODD_NAME = 'vm "quoted" | piped\nline2 🚀 \x07bell\x00nul\t\\'
# A JSON "\udc00" escape (an event, a reply) decodes to a lone surrogate, which UTF-8 cannot carry. Azure
# never names a VM so (nor can the emulator's Resource Graph store it): it reaches the decisions only.
LONE = ODD_NAME + " \udc00lone"
LONE_SHIPPED = ODD_NAME + " ?lone"
LONG = ("x|'\"\n🚀" * 11_000)[: 64 * 1024]  # 64 K characters


def test_long_fields_and_odd_names_ship_bounded_in_the_same_batch(bench: OutcomeBench) -> None:
    with bench.emulator.lock:  # a job of a VM since deleted, with the service's longest error text
        vault = bench.emulator.estate.vaults[WEU_VAULT.lower()]
        vm = VirtualMachine(PROD, "rg-odd", ODD_NAME, "westeurope")
        at = bench.emulator.now() - timedelta(minutes=5)
        started = at - timedelta(minutes=40)
        job = BackupJob(vault.id, vm, "Backup", started, "Failed", at, "UserErrorX", LONG, [LONG])
        odd_job = bench.emulator.estate.add_job(job)
    decision = Outcome("run-odd", vm_id_of(PROD, "rg-odd", LONE), WEU_VAULT, "backup", Result.FAILED, LONG)
    bench.record([decision])

    report = bench.ship()

    calls = [(r.upload_calls, r.parked, r.stopped) for r in report.results]
    assert calls == [(1, [], None), (1, [], None), (0, [], None)]  # no coverage run: nothing to ship there
    assert report.results[0].shipped == report.jobs_added > 1  # the odd job shipped with the others
    [shipped] = bench.query(f"{JOB_OUTCOMES.table} | where JobId == '{odd_job.job_id}'")
    assert shipped["VmName"] == ODD_NAME
    for field_ in ("ErrorMessage", "Recommendation"):
        assert len(shipped[field_]) == MAX_FIELD_CHARS
        assert shipped[field_] == LONG[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
    [action] = bench.query(f"{AUTOMATION_ACTIONS.table} | project VmId, Reason, RunId")
    assert action["VmId"] == vm_id_of(PROD, "rg-odd", LONE_SHIPPED)
    assert action["Reason"] == LONG[: MAX_FIELD_CHARS - len(TRUNCATED)] + TRUNCATED
    assert action["RunId"] == "run-odd"


# --- a record the service refuses on its own ------------------------------------------------------
def test_a_refused_record_is_isolated_and_parked_with_its_error_and_the_rest_ship(
    bench: OutcomeBench,
) -> None:
    sweep_and_finish(bench)
    ship_at = bench.emulator.now()
    job = FinishedJob(
        "bad-job",
        "Backup",
        "Completed",
        "vm",
        "vm",
        WEU_VAULT,
        PROD,
        "westeurope",
        start_time=ship_at - timedelta(hours=2),
        end_time=ship_at - timedelta(hours=1),
    )
    bad = {**job_outcome_row(job, Attribution("Schedule")), "Attempt": "three"}  # a str for an int column
    assert bench.outbox().add(JOB_OUTCOMES.stream, [bad]) == 1  # past `bounded`, as a bug would write it
    expected = finished_since(bench.jobs(), ship_at - FIRST_RUN_LOOKBACK - OVERLAP)

    report = bench.ship(now=lambda: ship_at)

    result = report.results[0]
    assert result.parked == ["bad-job"] and result.complete
    [(parked, error)] = bench.outbox().failed(JOB_OUTCOMES.stream)
    assert parked.record_id == "bad-job" and parked.row["Attempt"] == "three"
    assert error.startswith("HTTP 400") and "Attempt" in error
    assert list(bench.outbox().pending(JOB_OUTCOMES.stream)) == []
    statuses = Counter(e.status for e in bench.uploads())
    assert statuses[400] >= 2 and statuses[204] >= 2  # halved until the bad record stood alone
    assert result.upload_calls == statuses[400] + statuses[204] - 1  # the actions' one call
    rows = bench.query(f"{JOB_OUTCOMES.table} | summarize n = count() by RecordId")
    assert {r["RecordId"]: r["n"] for r in rows} == {i.lower(): 1 for i in expected}
    assert result.shipped == report.jobs_added == len(expected)
    assert bench.watermark() == report.watermark is not None
    assert bench.ship().results[0].upload_calls == 0
    assert len(bench.outbox().failed(JOB_OUTCOMES.stream)) == 1


# --- the outbox: order, idempotent add, a watermark that only moves forward -------------------------
@pytest.fixture
def outbox(azurite: str) -> Iterator[Outbox]:
    table = TableClient.from_connection_string(azurite, f"outbox{uuid.uuid4().hex[:12]}")
    box = Outbox(table)
    box.ensure_table()
    yield box
    table.delete_table()
    table.close()


def outcome_row(job_id: str, ended: datetime) -> dict[str, Any]:
    job = FinishedJob(job_id, "Backup", "Completed", "vm", "vm", WEU_VAULT, PROD, "westeurope", ended, ended)
    return job_outcome_row(job, Attribution("Schedule"))


def test_outbox_hands_records_out_oldest_first_and_adds_each_once(outbox: Outbox) -> None:
    base = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    rows = [outcome_row(f"job-{i:03d}", base + timedelta(seconds=(i * 37) % 150)) for i in range(150)]
    random.Random(5).shuffle(rows)  # more than one Table transaction (100), in no particular order

    assert outbox.add(JOB_OUTCOMES.stream, rows + rows[:3]) == 150
    assert outbox.add(JOB_OUTCOMES.stream, rows[:10]) == 0

    pending = list(outbox.pending(JOB_OUTCOMES.stream))
    assert len(pending) == 150
    assert [p.row["TimeGenerated"] for p in pending] == sorted(r["TimeGenerated"] for r in rows)
    assert {p.record_id for p in pending} == {f"job-{i:03d}" for i in range(150)}
    assert pending[0].row == next(r for r in rows if r["RecordId"] == pending[0].record_id)


def test_shipped_job_outcomes_are_not_queued_again(outbox: Outbox) -> None:
    row = outcome_row("job-a", datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    outbox.add(JOB_OUTCOMES.stream, [row])
    outbox.mark_shipped(list(outbox.pending(JOB_OUTCOMES.stream)), keep_markers=True)

    assert outbox.add(JOB_OUTCOMES.stream, [row], skip_shipped=True) == 0
    assert list(outbox.pending(JOB_OUTCOMES.stream)) == []


def test_watermark_moves_only_from_the_value_read(outbox: Outbox) -> None:
    t1, t2, t3 = (datetime(2026, 11, 25, hour, tzinfo=UTC) for hour in (8, 9, 10))
    assert outbox.watermark("jobs") == (None, None)
    outbox.move_watermark("jobs", t1, None)
    _, read_by_both = outbox.watermark("jobs")

    outbox.move_watermark("jobs", t2, read_by_both)  # the faster of two runs
    outbox.move_watermark("jobs", t3, read_by_both)  # the slower: its read is stale, it must not win
    outbox.move_watermark("jobs", t3, None)  # a run that saw no watermark, late: neither

    value, etag = outbox.watermark("jobs")
    assert value == t2 and etag != read_by_both


def test_a_run_never_moves_the_watermark_back(bench: OutcomeBench) -> None:
    sweep_and_finish(bench)
    ship_at = bench.emulator.now()
    newest = max(j.end_time for j in finished_since(bench.jobs(), ship_at - OVERLAP).values() if j.end_time)
    ahead = newest + timedelta(minutes=10)  # moved by another run; this run's overlap still reaches back
    bench.outbox().move_watermark(WATERMARK, ahead, None)

    report = bench.ship(now=lambda: ship_at)

    assert report.jobs_found > 0 and report.results[0].complete
    assert report.watermark == bench.watermark() == ahead


# --- the deployed entry points ---------------------------------------------------------------------
@functools.cache
def ship_outcomes_function() -> Any:
    """`ship_outcomes` as the host indexes it, from a fresh function_app: get_functions() runs once an app."""
    app = importlib.reload(function_app).app
    return {fn.get_function_name(): fn for fn in app.get_functions()}["ship_outcomes"]


@pytest.fixture
def live_outcomes(bench: OutcomeBench) -> OutcomeBench:
    """The demo estate with its clock at the wall clock, which the timer and the CLI read."""
    scenario = demo_at_wall_clock()
    scenario["clock"]["scale"] = 1.0
    bench.load(scenario)
    return bench


def use_app_settings(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    """The environment as the Functions host (or an operator's shell) sets it: these settings only."""
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage", "OUTCOMES_SCHEDULE")):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def shipped_by_the_first_run(bench: OutcomeBench, wall_clock: datetime) -> set[str]:
    since = wall_clock - FIRST_RUN_LOOKBACK - OVERLAP
    return {job_id.lower() for job_id in finished_since(bench.jobs(), since)}


def test_ship_outcomes_timer_ships_on_its_schedule_setting(
    live_outcomes: OutcomeBench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_app_settings(monkeypatch, live_outcomes.env())
    expected = shipped_by_the_first_run(live_outcomes, datetime.now(UTC))
    function = ship_outcomes_function()
    assert function.get_trigger().get_dict_repr()["schedule"] == "%OUTCOMES_SCHEDULE%"

    with caplog.at_level(logging.INFO):
        function.get_user_function()(TimerRequest(past_due=False))

    rows = live_outcomes.query(f"{JOB_OUTCOMES.table} | summarize n = count() by RecordId")
    assert {r["RecordId"]: r["n"] for r in rows} == {i: 1 for i in expected}
    [summary] = [r for r in caplog.records if r.getMessage() == "ship_outcomes summary"]
    assert summary.__dict__["jobs_found"] == len(expected)
    assert live_outcomes.watermark() is not None


def test_cli_ship_outcomes_prints_the_run_as_json(live_outcomes: OutcomeBench) -> None:
    expected = shipped_by_the_first_run(live_outcomes, datetime.now(UTC))

    done = run_cli("ship-outcomes", env=cli_env(live_outcomes))

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["jobs_found"] == printed["jobs_added"] == len(expected)
    assert [(s["stream"], s["shipped"], s["stopped"]) for s in printed["streams"]] == [
        (JOB_OUTCOMES.stream, len(expected), None),
        (AUTOMATION_ACTIONS.stream, 0, None),
        (COVERAGE.stream, 0, None),
    ]
    assert datetime.fromisoformat(printed["watermark"]) == live_outcomes.watermark()
    assert {str(r["RecordId"]) for r in live_outcomes.landed()} == expected


def test_cli_ship_outcomes_without_a_dcr_fails_naming_the_setting(
    bench: OutcomeBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_app_settings(monkeypatch, bench.env())
    monkeypatch.delenv("BACKUPWARDEN_DCR_IMMUTABLE_ID")

    code = cli.main(["ship-outcomes"])  # what `python -m backupwarden ship-outcomes` runs, in-process

    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: BACKUPWARDEN_DCR_IMMUTABLE_ID: missing")
    assert out == ""
    assert bench.uploads() == []
