"""The `sweep` timer function as the Functions host calls it: the registered user function, a real
`TimerRequest`, app settings from the environment, the emulator (HTTPS) and Azurite behind it."""

from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Any

import pytest
from azure.functions.timer import TimerRequest  # the concrete class the host's timer converter builds

import function_app
from tests.sweep_fixtures import SweepBench, demo_at_wall_clock, triggered_names


@functools.cache
def sweep_function() -> Any:
    """The `sweep` function as the host indexes it: from a fresh import of function_app, indexed once
    (`FunctionApp.get_functions()` refuses a second call on the same app; other tests call it too)."""
    app = importlib.reload(function_app).app
    return {fn.get_function_name(): fn for fn in app.get_functions()}["sweep"]


@pytest.fixture
def app_settings(sweep_bench: SweepBench, monkeypatch: pytest.MonkeyPatch) -> SweepBench:
    """The demo estate at the wall clock (the function reads it), and the bench's settings as app settings."""
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in sweep_bench.env().items():
        monkeypatch.setenv(name, value)
    sweep_bench.load(demo_at_wall_clock())
    return sweep_bench


def test_sweep_is_a_timer_on_the_schedule_setting() -> None:
    trigger = sweep_function().get_trigger().get_dict_repr()
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%SWEEP_SCHEDULE%"
    assert trigger["name"] == "timer"


@pytest.mark.parametrize("past_due", [True, False])
def test_timer_run_triggers_the_stuck_vms_and_logs_past_due(
    app_settings: SweepBench, caplog: pytest.LogCaptureFixture, past_due: bool
) -> None:
    with caplog.at_level(logging.INFO):
        sweep_function().get_user_function()(TimerRequest(past_due=past_due))

    assert sorted(app_settings.backup_post_vms()) == sorted(triggered_names(demo_at_wall_clock()))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "past due" in r.getMessage()]
    assert len(warned) == (1 if past_due else 0)
    summaries = [r for r in caplog.records if r.getMessage() == "sweep run summary"]
    assert len(summaries) == 1
    assert summaries[0].__dict__["past_due"] is past_due
    assert summaries[0].__dict__["triggered"] == len(triggered_names(demo_at_wall_clock()))
