"""`python -m backupwarden coverage` in a subprocess, configured by environment variables only, against
the in-process emulator (HTTPS): table and json output, progress on stderr, one line on a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backupwarden.domain.protection_states import VmState
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.resourcegraph.models import ResourceGraphBackend
from tests.test_coverage_flow import ESTATE_A, ESTATE_B, SUB_A, SUB_B, scenario

ROOT = Path(__file__).resolve().parents[1]
VM_KEYS = {
    "vm_id",
    "vm_name",
    "subscription_id",
    "region",
    "state",
    "action",
    "reason",
    "recommendation",
    "failure_class",
    "within_rpo",
    "hours_without_recovery_point",
}


@pytest.fixture
def live(emulator: Emulator) -> Iterator[Emulator]:
    """The test estate with the emulator's clock at the wall clock the CLI reads."""
    emulator.backend(ResourceGraphBackend).quota_per_5s = 1000
    start = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    emulator.load_scenario(scenario(start=start))
    yield emulator
    emulator.faults.clear()
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


def run_coverage(server: EmulatorServer, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage"))
    }
    env = {
        **inherited,
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BACKUPWARDEN_SUBSCRIPTIONS": f"{SUB_A},{SUB_B}",
        "BACKUPWARDEN_ARM_ENDPOINT": server.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "x",
        "BACKUPWARDEN_CA_BUNDLE": server.ca_bundle,
        "BACKUPWARDEN_HTTP_RETRY_TOTAL": "0",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "-m", "backupwarden", "coverage", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_lists_every_vm_and_the_totals(live: Emulator, emulator_server: EmulatorServer) -> None:
    done = run_coverage(emulator_server, "--output", "json")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON object on one line"
    printed = json.loads(lines[0])
    assert printed["complete"] is True and printed["failures"] == []
    assert all(set(vm) == VM_KEYS for vm in printed["vms"])
    states = {vm["vm_name"]: (vm["state"], vm["action"]) for vm in printed["vms"]}
    expected = {
        name: (state.value, action.value) for name, (_, state, action, _) in {**ESTATE_A, **ESTATE_B}.items()
    }
    assert states == expected
    assert printed["totals"]["total"] == {"scope": "total", "in_scope": 15, "covered": 5, "percent": 33.33}
    assert printed["requests"] == 5
    assert "coverage: read 16 VMs" in done.stderr  # progress goes to stderr, never into the JSON


def test_table_shows_each_vm_with_state_action_reason_then_the_totals(
    live: Emulator, emulator_server: EmulatorServer
) -> None:
    done = run_coverage(emulator_server)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["VM", "SUBSCRIPTION", "STATE", "ACTION", "WITHOUT", "RP", "REASON"]
    rows = {line.split()[0]: line.split() for line in lines[1 : 1 + len(ESTATE_A) + len(ESTATE_B)]}
    assert rows["stale"][2:4] == [VmState.STALE.value, "backup_now"]
    assert rows["gone"][2:4] == [VmState.ORPHANED.value, "escalate"]
    assert "UserErrorRequestDisallowedByPolicy" in " ".join(rows["denied"])
    totals = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["total"], [SUB_A])}
    assert totals["total"] == ["15", "5", "33.3%"]
    assert totals[SUB_A] == ["13", "4", "30.8%"]


def test_a_failure_that_leaves_no_result_is_one_line_and_exit_1(
    live: Emulator, emulator_server: EmulatorServer
) -> None:
    live.faults.set([Fault(path_regex="microsoft.resourcegraph", status=503)])

    done = run_coverage(emulator_server, "--output", "json")

    assert done.returncode == 1
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing could be read" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_partial_read_prints_what_was_read_names_the_rest_and_exits_1(
    live: Emulator, emulator_server: EmulatorServer
) -> None:
    live.faults.set([Fault(path_regex="microsoft.resourcegraph", status=503, remaining=2)])

    done = run_coverage(emulator_server)

    assert done.returncode == 1
    assert f"not read: /subscriptions/{SUB_A}:" in done.stdout
    assert "bcurrent" in done.stdout and "stale" not in done.stdout
