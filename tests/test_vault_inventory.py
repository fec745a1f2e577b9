"""The coverage read vault by vault (BACKUPWARDEN_DISCOVERY=vaults) against the emulator through the real
SDK clients, on emulator/scenarios/coverage.yaml: the same classification as the Resource Graph read,
a vault that cannot be read reported with its region's VMs left out, and the CLI end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from backupwarden.domain.protection_states import VmState
from backupwarden.flows.coverage import CoverageScan
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.resourcegraph.models import ResourceGraphBackend
from emulator.scenario import load_scenario_file
from tests.test_coverage_cli import run_coverage
from tests.test_coverage_flow import scan
from tests.test_coverage_scenario import DEV, PROD, STATE_OF

SUBSCRIPTIONS = f"{PROD},{DEV}"
VAULTS = {"BACKUPWARDEN_DISCOVERY": "vaults", "BACKUPWARDEN_SUBSCRIPTIONS": SUBSCRIPTIONS}
RESOURCE_GRAPH = {"BACKUPWARDEN_DISCOVERY": "resource-graph", "BACKUPWARDEN_SUBSCRIPTIONS": SUBSCRIPTIONS}
# per subscription a VM list and a vault list; per vault an item list; per vault that holds items a
# job list and a policy list (rsv-cov-neu holds none): 2 * 2 + 4 + 3 * 2, one page each
EXPECTED_REQUESTS = 14


@pytest.fixture
def coverage_estate(emulator: Emulator) -> Iterator[Emulator]:
    emulator.backend(ResourceGraphBackend).quota_per_5s = 1000
    scenario = load_scenario_file("coverage")
    scenario["clock"]["scale"] = 0  # frozen: both reads see the same moment
    emulator.load_scenario(scenario)
    yield emulator
    emulator.faults.clear()
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


def verdicts(result: CoverageScan) -> dict[str, tuple[VmState, str, bool, str]]:
    """Each VM's state, action, whether it is within its RPO, and the reason (which names what was read:
    error codes, the policy's RPO, since when protection was configured)."""
    return {c.vm.name: (c.state, c.action.value, c.within_rpo, c.reason) for c in result.classifications}


def figures(result: CoverageScan) -> list[tuple[str, int, int]]:
    report = result.report
    return [
        (f.scope, f.in_scope, f.covered) for f in (report.total, *report.by_subscription, *report.by_region)
    ]


def test_vault_by_vault_classifies_every_vm_as_the_resource_graph_read(
    coverage_estate: Emulator, emulator_server: EmulatorServer
) -> None:
    by_graph = scan(coverage_estate, emulator_server, **RESOURCE_GRAPH)
    coverage_estate.requests.clear()

    by_vault = scan(coverage_estate, emulator_server, **VAULTS)

    sent = coverage_estate.requests.entries()
    assert not [e.path for e in sent if "microsoft.resourcegraph" in e.path.lower()]
    assert by_vault.complete and by_graph.complete
    assert verdicts(by_vault) == verdicts(by_graph)
    assert {verdicts(by_vault)[name][0] for name in STATE_OF.values()} == set(STATE_OF)
    assert figures(by_vault) == figures(by_graph)
    assert by_vault.requests == len(sent) == EXPECTED_REQUESTS, [e.path for e in sent]


def test_a_vault_whose_items_cannot_be_listed_is_reported_and_its_region_left_out(
    coverage_estate: Emulator, emulator_server: EmulatorServer
) -> None:
    expected = verdicts(scan(coverage_estate, emulator_server, **RESOURCE_GRAPH))
    coverage_estate.faults.set([Fault(path_regex="/vaults/rsv-cov-dev-weu/backupProtectedItems", status=503)])

    result = scan(coverage_estate, emulator_server, BACKUPWARDEN_HTTP_RETRY_TOTAL="0", **VAULTS)

    failed_vault = (
        f"/subscriptions/{DEV}/resourcegroups/rg-backup-dev"
        "/providers/microsoft.recoveryservices/vaults/rsv-cov-dev-weu"
    )
    assert [f.scope for f in result.failures] == [failed_vault]
    assert result.failures[0].error.startswith("list protected items:")
    # a VM of the vault's subscription and region may be protected there: none is reported at all
    left_out = {"cov-stale", "cov-soft-deleted", "cov-vault-full"}
    got = verdicts(result)
    assert left_out <= set(expected) and not left_out & set(got)
    assert got == {name: verdict for name, verdict in expected.items() if name not in left_out}
    assert got["cov-orphaned"][0] is VmState.ORPHANED  # the subscription's other vault is still read


def test_the_coverage_command_reads_vault_by_vault(
    emulator: Emulator, emulator_server: EmulatorServer
) -> None:
    scenario = load_scenario_file("coverage")
    # the CLI judges by the wall clock: the estate starts now
    scenario["clock"] = {"start": datetime.now(UTC).replace(microsecond=0).isoformat(), "scale": 0}
    emulator.load_scenario(scenario)
    emulator.faults.set([Fault(path_regex="microsoft.resourcegraph", status=503)])  # not allowed here
    try:
        done = run_coverage(emulator_server, "--output", "json", **VAULTS)
    finally:
        emulator.faults.clear()
        with emulator.lock:
            emulator.clock.set(emulator.clock.now(), scale=1.0)

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["complete"] is True and printed["failures"] == []
    states = {vm["vm_name"]: vm["state"] for vm in printed["vms"]}
    assert {states[name] for name in STATE_OF.values()} == {state.value for state in STATE_OF}
    assert all(states[name] == state.value for state, name in STATE_OF.items())
    assert printed["requests"] == EXPECTED_REQUESTS
    assert "coverage: read" in done.stderr
