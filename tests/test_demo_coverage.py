"""The demo's coverage phase (devtools/demo_coverage.py) against the emulator (HTTPS) and Azurite:
every protection state shows once before, the reconciler acts, and coverage rises once the backups it
started have run."""

from __future__ import annotations

from backupwarden.domain.protection_states import VmState
from devtools.demo_coverage import coverage_phase
from emulator.scenario import load_scenario_file
from tests.sweep_fixtures import SweepBench


def test_the_phase_shows_every_state_and_the_coverage_before_and_after(sweep_bench: SweepBench) -> None:
    estate = load_scenario_file("coverage")
    # the service's own waits (container refresh, enabling protection) at once: the emulator runs at
    # real speed here, the demo at 60x
    estate["timings"] = {"retry_after_s": 0, "refresh_containers_s": 0, "configure_operation_s": 0}
    settings = sweep_bench.settings()
    printed = coverage_phase(sweep_bench.emulator, settings, sweep_bench.clients(settings), estate)

    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("VM "))
    vm_rows = lines[header + 1 : lines.index("", header)]
    before = {row.split()[1] for row in vm_rows}
    assert before == {state.value for state in VmState}
    total = next(line for line in lines if line.startswith("total "))
    # hand-counted from emulator/scenarios/coverage.yaml: 12 VMs in scope (excluded and orphaned are
    # not), 1 covered before (cov-current); after: + cov-pending, cov-stale, cov-failing (retried, its
    # agent is fine), cov-unprotected (enrolled); cov-agent-not-ready's first backup fails
    assert total.split()[1:] == ["1", "of", "12", "(8%)", "5", "of", "12", "(42%)"]
    rows = {row.split()[0]: row for row in vm_rows}
    assert rows["cov-agent-not-ready"].split()[-1] == "pending_first_backup"
    assert "pre-flight refused" in rows["cov-ultra"] and "pre-flight refused" in rows["cov-denied"]
