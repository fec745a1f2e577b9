"""The `reconcile` timer function as the Functions host calls it (the registered user function, a real
`TimerRequest`, app settings from the environment), with the emulator (HTTPS) and Azurite behind it;
and the reconciler's time budget."""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest  # the concrete class the host's timer converter builds

import function_app
from backupwarden.app import build_reconciler
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import Deadline
from backupwarden.flows.reconcile import RUN_ACTION
from tests.sweep_fixtures import SweepBench, vm_name
from tests.test_reconcile_flow import BACKUP_POSTS, TO_BACK_UP, TO_ENROL, TO_ESCALATE, Reconciling, scenario


@functools.cache
def reconcile_function() -> Any:
    """As the host indexes it: from a fresh import of function_app, indexed once."""
    app = importlib.reload(function_app).app
    return {fn.get_function_name(): fn for fn in app.get_functions()}["reconcile"]


@pytest.fixture
def app_settings(sweep_bench: SweepBench, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reconciling]:
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    sweep_bench.load(scenario(start=datetime.now(UTC)))  # the function's clock is the wall clock
    reconciling = Reconciling(sweep_bench)
    for name, value in sweep_bench.env(**reconciling.env()).items():
        monkeypatch.setenv(name, value)
    yield reconciling
    reconciling.close()


def test_reconcile_is_a_timer_on_its_schedule_setting() -> None:
    trigger = reconcile_function().get_trigger().get_dict_repr()
    assert (trigger["type"], trigger["schedule"], trigger["name"]) == (
        "timerTrigger",
        "%RECONCILE_SCHEDULE%",
        "timer",
    )


def test_a_timer_run_takes_each_state_s_action_and_records_it(
    app_settings: Reconciling, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        reconcile_function().get_user_function()(TimerRequest(past_due=True))

    assert app_settings.accepted_posts() == BACKUP_POSTS
    rows = app_settings.records()
    assert {row["Source"] for row in rows} == {"Timer"}
    escalated = {vm_name(r["VmId"]) for r in rows if r["Result"] == "escalated"}
    assert escalated == TO_ESCALATE
    assert (rows[-1]["Action"], rows[-1]["Result"]) == (RUN_ACTION, "completed")
    coverage = app_settings.coverage_rows()
    assert {r["RunId"] for r in coverage} == {rows[-1]["RunId"]}
    total = next(r for r in coverage if r["Kind"] == "total")
    # every VM but the gone one in scope; covered: "current" and "denied" (its recovery point is 2 h old)
    assert (total["InScope"], total["Covered"]) == (10, 2)
    vaults = {vm_name(r["VmId"]): r["VaultId"] for r in coverage if r["Kind"] == "vm"}
    assert vaults["optin"].lower().endswith("/vaults/v1")  # enrolled by this run: no item was read
    assert vaults["plain"] == ""
    summary = next(r for r in caplog.records if r.getMessage() == "reconcile run summary")
    assert summary.__dict__["past_due"] is True and summary.__dict__["triggered"] == len(TO_BACK_UP)
    assert any("past due" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


class SteppingClock:
    """A monotonic clock that moves `step` seconds at each reading: a run whose every check of its
    deadline finds it `step` seconds further on."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_near_its_time_budget_a_run_starts_no_more_vms_and_says_how_many_are_left(
    app_settings: Reconciling,
) -> None:
    recorded: list[Outcome] = []
    # settings' call timeout is a quarter of the 7-minute default budget: 105 s; a VM "takes" 60 s
    deadline = Deadline.start(timedelta(minutes=7), SteppingClock(60))
    settings = app_settings.bench.settings(**app_settings.env())
    clients = app_settings.bench.clients(settings)
    reconciler = build_reconciler(settings, clients, now=app_settings.bench.emulator.now)
    result = reconciler.run(recorded.extend, deadline=deadline)

    to_act = len(TO_BACK_UP | TO_ESCALATE | TO_ENROL)
    started = result.report.candidates
    assert 0 < started < to_act
    run = recorded[-1]
    assert run.action == RUN_ACTION and run.result is Result.COMPLETED
    assert f"{to_act - started} VMs not started (time budget nearly spent)" in run.reason
    posts = sum(app_settings.accepted_posts().values())
    assert posts <= started
