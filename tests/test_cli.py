"""`python -m backupwarden …` in a subprocess, configured only by environment variables, against the
in-process emulator (HTTPS) and Azurite: the same code path an operator runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backupwarden.domain.records import Result
from tests.sweep_fixtures import SweepBench, demo_at_wall_clock, expected_outcomes, triggered_names

ROOT = Path(__file__).resolve().parents[1]
OUTCOME_KEYS = {"vm_id", "vault_id", "action", "result", "reason", "job_id", "error_code"}


def run_cli(*args: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupwarden", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def cli_env(bench: SweepBench, **overrides: str) -> dict[str, str]:
    """The parent's environment without any backupwarden setting, plus the bench's settings."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage", "SWEEP_SCHEDULE"))
    }
    return {**inherited, **bench.env(**overrides)}


@pytest.fixture
def live_demo(sweep_bench: SweepBench) -> SweepBench:
    """The demo estate on the emulator, its clock at the wall clock the CLI reads."""
    sweep_bench.load(demo_at_wall_clock())
    return sweep_bench


def test_sweep_json_output_is_one_object_with_every_outcome(live_demo: SweepBench) -> None:
    done = run_cli("sweep", "--output", "json", env=cli_env(live_demo))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"one JSON object on one line, got: {done.stdout!r}"
    printed = json.loads(lines[0])
    assert set(printed) == {"run_id", "dry_run", "summary", "outcomes"}
    assert printed["dry_run"] is False and printed["run_id"]
    assert all(set(outcome) == OUTCOME_KEYS for outcome in printed["outcomes"])
    scenario = demo_at_wall_clock()
    by_name = {o["vm_id"].rsplit("/", 1)[-1]: o for o in printed["outcomes"]}
    assert set(by_name) == set(expected_outcomes(scenario))
    triggered = {name for name, o in by_name.items() if o["result"] == Result.TRIGGERED.value}
    assert triggered == triggered_names(scenario)
    # "Backup now" sends the POST alone: the job is learnt from the job list later, so none is printed
    assert all(by_name[name]["job_id"] is None for name in triggered)
    assert printed["summary"]["triggered"] == len(triggered)
    assert printed["summary"]["candidates"] == len(by_name)
    assert sorted(live_demo.backup_post_vms()) == sorted(triggered), "the CLI really clicked Backup now"


def test_sweep_dry_run_flag_sends_no_write(live_demo: SweepBench) -> None:
    done = run_cli("sweep", "--dry-run", "--output", "json", env=cli_env(live_demo))

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["dry_run"] is True
    would = {
        o["vm_id"].rsplit("/", 1)[-1] for o in printed["outcomes"] if o["result"] == Result.DRY_RUN.value
    }
    assert would == triggered_names(demo_at_wall_clock())
    entries = live_demo.requests()
    assert entries, "the dry run read the estate"
    assert [e for e in entries if e.kind == "write"] == []
    assert {e.route for e in entries if e.method != "GET"} == {"/providers/Microsoft.ResourceGraph/resources"}


def test_sweep_table_output_names_each_vm_and_the_summary(live_demo: SweepBench) -> None:
    done = run_cli("sweep", "--output", "table", env=cli_env(live_demo))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["VM", "RESULT", "REASON", "JOB", "/", "ERROR"]
    rows = {
        line.split()[0]: line.split()[1] for line in lines[1:] if line.strip() and not line.startswith("run ")
    }
    scenario = demo_at_wall_clock()
    assert rows == {name: result.value for name, (result, _) in expected_outcomes(scenario).items()}
    summary = lines[-1]
    assert summary.startswith("run ") and f"{len(triggered_names(scenario))} triggered" in summary


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("BACKUPWARDEN_DISCOVERY", "graph-api"),
        ("BACKUPWARDEN_DAILY_BUDGET", "10"),
        ("BACKUPWARDEN_SUBSCRIPTIONS", "11111111-1111-4111-8111-111111111111,not-a-subscription"),
    ],
)
def test_bad_setting_fails_at_start_naming_the_setting(
    live_demo: SweepBench, setting: str, value: str
) -> None:
    done = run_cli("sweep", env=cli_env(live_demo, **{setting: value}))

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {setting}:"), done.stderr
    assert done.stdout == ""
    assert live_demo.requests() == [], "nothing was called before the settings were checked"


def test_demo_command_shows_stuck_vms_triggered_then_protected() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BACKUPWARDEN_")}
    done = run_cli("demo", env=env, timeout_s=90)

    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    web_01 = next(row for row in rows if row and row[0] == "web-01")
    # the sweep's outcome has no job id (the POST goes alone): the table names the job the list shows
    assert "triggered" in web_01 and web_01[-4:-2] == ["Protected", "(job"] and web_01[-1] == "Completed)"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", web_01[-2]), web_01
    assert any(line.startswith("after the emulated clock advanced:") for line in done.stdout.splitlines())
    assert "0 failed" in done.stdout
