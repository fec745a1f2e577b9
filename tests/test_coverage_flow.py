"""The read-only coverage scan against the emulator through the real SDK clients: every protection
state classified from bulk reads, the figures against a hand count, and the number of requests
independent of the number of VMs (Resource Graph pages and one policy list per vault)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.protection_inventory import ProtectionInventoryReader, VmKind
from backupwarden.app import build_coverage
from backupwarden.domain.protection_states import Action, VmState
from backupwarden.flows.coverage import CoverageScan
from backupwarden.settings import Settings
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.resourcegraph.models import ResourceGraphBackend

SUB_A = "11111111-1111-4111-8111-111111111111"
SUB_B = "22222222-2222-4222-8222-222222222222"
START = "2026-11-25T10:00:00Z"
POLICIES = [
    {"name": "DefaultPolicy"},  # daily at 22:00: an RPO of 24 h
    {
        "name": "WeeklyStandard",
        "schedule": {"frequency": "Weekly", "time": "21:30", "days": ["Monday", "Thursday"]},
    },
]


def protected(state: str, vault: str = "v1", **extra: Any) -> dict[str, Any]:
    return {"vault": vault, "state": state, **extra}


# name: (VM, expected state, expected action, covered); the hand count below follows this table
ESTATE_A: dict[str, tuple[dict[str, Any], VmState, Action, bool]] = {
    "skipped": (
        {"tags": {"backupwarden:skip": "true"}, "protection": protected("Protected", last_backup="-2h")},
        VmState.EXCLUDED,
        Action.NONE,
        True,
    ),
    "gone": (
        {"deleted": True, "protection": protected("Protected")},
        VmState.ORPHANED,
        Action.ESCALATE,
        False,
    ),
    "softdel": (
        {"protection": protected("ProtectionStopped", since="-30d", soft_deleted_at="-2d")},
        VmState.SOFT_DELETED,
        Action.ESCALATE,
        False,
    ),
    "stopped": (
        {"protection": protected("ProtectionStopped", since="-30d", last_recovery_point="-10d")},
        VmState.STOPPED,
        Action.ESCALATE,
        False,
    ),
    "suspended": (
        {"protection": protected("BackupsSuspended", since="-30d", last_recovery_point="-10h")},
        VmState.STOPPED,
        Action.ESCALATE,
        True,
    ),
    "agentdown": (
        {
            "protection": protected(
                "ProtectionError",
                since="-20d",
                last_recovery_point="-3d",
                last_backup_failed={"code": "UserErrorGuestAgentStatusUnavailable"},
            )
        },
        VmState.FAILING,
        Action.BACKUP_NOW,
        False,
    ),
    "denied": (
        {
            "protection": protected(
                "ProtectionError",
                since="-20d",
                last_recovery_point="-2h",
                last_backup_failed={"code": "UserErrorRequestDisallowedByPolicy"},
            )
        },
        VmState.FAILING,
        Action.ESCALATE,
        True,
    ),
    "pendingold": (
        {"protection": protected("IRPending", since="-3h")},
        VmState.PENDING_FIRST_BACKUP,
        Action.BACKUP_NOW,
        False,
    ),
    "pendingyoung": (
        {"protection": protected("IRPending", since="-20m")},
        VmState.PENDING_FIRST_BACKUP,
        Action.NONE,
        False,
    ),
    "current": (
        {"protection": protected("Protected", last_backup="-6h")},
        VmState.PROTECTED_CURRENT,
        Action.NONE,
        True,
    ),
    # three days is within a Monday/Thursday policy's RPO (4 days), not within a daily one's
    "weekly": (
        {"protection": protected("Protected", policy="WeeklyStandard", last_backup="-3d")},
        VmState.PROTECTED_CURRENT,
        Action.NONE,
        True,
    ),
    "stale": (
        {"protection": protected("Protected", last_backup="-3d")},
        VmState.STALE,
        Action.BACKUP_NOW,
        False,
    ),
    "newvm": ({"created": "-10m"}, VmState.NEW, Action.NONE, False),
    "plain": ({}, VmState.UNPROTECTED, Action.NONE, False),
    "optin": ({"tags": {"backupwarden:enroll": "true"}}, VmState.UNPROTECTED, Action.NONE, False),
}
ESTATE_B: dict[str, tuple[dict[str, Any], VmState, Action, bool]] = {
    "bcurrent": (
        {"protection": protected("Protected", vault="v2", last_backup="-1h")},
        VmState.PROTECTED_CURRENT,
        Action.NONE,
        True,
    ),
    "bplain": ({}, VmState.UNPROTECTED, Action.NONE, False),
}


def scenario(extra_protected_vms: int = 0, start: str = START) -> dict[str, Any]:
    def vms(
        estate: dict[str, tuple[dict[str, Any], VmState, Action, bool]], location: str
    ) -> list[dict[str, Any]]:
        return [
            {"name": name, "location": location, "resource_group": "rg-a", **vm}
            for name, (vm, *_) in estate.items()
        ]

    extra = [
        {
            "name": f"more{n}",
            "location": "westeurope",
            "resource_group": "rg-a",
            "protection": protected("Protected"),
        }
        for n in range(extra_protected_vms)
    ]
    return {
        "clock": {"start": start, "scale": 0},
        "subscriptions": [
            {
                "id": SUB_A,
                "vaults": [
                    {"name": "v1", "resource_group": "rg-v", "location": "westeurope", "policies": POLICIES}
                ],
                "vms": vms(ESTATE_A, "westeurope") + extra,
            },
            {
                "id": SUB_B,
                "vaults": [{"name": "v2", "resource_group": "rg-v", "location": "northeurope"}],
                "vms": vms(ESTATE_B, "northeurope"),
            },
        ],
    }


@pytest.fixture
def bench(emulator: Emulator) -> Iterator[Emulator]:
    emulator.backend(ResourceGraphBackend).quota_per_5s = 1000
    yield emulator
    emulator.faults.clear()
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


def scan(emulator: Emulator, server: EmulatorServer, **overrides: str) -> CoverageScan:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # never reached: coverage writes nothing
            "BACKUPWARDEN_SUBSCRIPTIONS": f"{SUB_A},{SUB_B}",
            "BACKUPWARDEN_ARM_ENDPOINT": server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "x",
            "BACKUPWARDEN_CA_BUNDLE": server.ca_bundle,
            "BACKUPWARDEN_HTTP_RETRY_TOTAL": "2",
            **overrides,
        }
    )
    with AzureClients(settings) as clients:
        return build_coverage(settings, clients, now=emulator.now).run()


def by_name(result: CoverageScan) -> dict[str, Any]:
    return {c.vm.name: c for c in result.classifications}


def test_every_state_is_classified_with_its_action(bench: Emulator, emulator_server: EmulatorServer) -> None:
    bench.load_scenario(scenario())

    result = scan(bench, emulator_server)

    got = by_name(result)
    expected = {**ESTATE_A, **ESTATE_B}
    assert set(got) == set(expected)
    for name, (_vm, state, action, covered) in expected.items():
        assert (got[name].state, got[name].action) == (state, action), (name, got[name].reason)
        if state not in (VmState.EXCLUDED, VmState.ORPHANED):
            assert got[name].within_rpo is covered, name
    assert {c.state for c in result.classifications} == set(VmState), "every state appears"
    assert result.complete and result.failures == ()


def test_reasons_carry_what_was_read(bench: Emulator, emulator_server: EmulatorServer) -> None:
    bench.load_scenario(scenario())

    got = by_name(scan(bench, emulator_server))

    assert "UserErrorGuestAgentStatusUnavailable" in got["agentdown"].reason
    assert "UserErrorRequestDisallowedByPolicy" in got["denied"].reason
    assert "RPO of 4d" in got["weekly"].reason  # the policy's schedule was read, not assumed
    assert "since 2026-11-25T07:00Z" in got["pendingold"].reason  # from the ConfigureBackup job
    assert got["gone"].vm.exists is False and "no longer exists" in got["gone"].reason
    assert got["pendingold"].time_without_recovery_point is not None
    assert got["pendingold"].time_without_recovery_point.total_seconds() == 3 * 3600


def test_enroll_existing_tagged_proposes_enrolling_opted_in_vms_only(
    bench: Emulator, emulator_server: EmulatorServer
) -> None:
    bench.load_scenario(scenario())

    got = by_name(scan(bench, emulator_server, BACKUPWARDEN_ENROLL_EXISTING="tagged"))

    assert got["optin"].action is Action.ENROLL
    assert got["plain"].action is Action.NONE and got["bplain"].action is Action.NONE
    assert got["newvm"].action is Action.NONE


def test_coverage_figures_match_the_hand_count(bench: Emulator, emulator_server: EmulatorServer) -> None:
    bench.load_scenario(scenario())

    report = scan(bench, emulator_server).report

    # in scope: every VM but `skipped` (opted out) and `gone` (no VM): 13 in A, 2 in B
    # covered: suspended, denied, current, weekly in A; bcurrent in B
    assert (report.total.in_scope, report.total.covered) == (15, 5)
    assert [(f.scope, f.in_scope, f.covered) for f in report.by_subscription] == [
        (SUB_A, 13, 4),
        (SUB_B, 2, 1),
    ]
    assert [(f.scope, f.in_scope, f.covered) for f in report.by_region] == [
        ("northeurope", 2, 1),
        ("westeurope", 13, 4),
    ]


def test_reads_are_bulk_whatever_the_number_of_vms(bench: Emulator, emulator_server: EmulatorServer) -> None:
    counts = []
    for extra in (0, 40):
        bench.load_scenario(scenario(extra_protected_vms=extra))
        bench.requests.clear()
        result = scan(bench, emulator_server)
        sent = bench.requests.entries()
        graph = [e for e in sent if "microsoft.resourcegraph" in e.path.lower()]
        policies = [e for e in sent if e.path.lower().endswith("/backuppolicies")]
        # three Resource Graph queries of one page each; one policy list per vault that holds items
        assert (len(graph), len(policies), len(sent)) == (3, 2, 5), [e.path for e in sent]
        assert result.requests == len(sent)
        counts.append((len(result.classifications), len(sent)))
    assert counts[1][0] == counts[0][0] + 40 and counts[1][1] == counts[0][1]


def test_a_subscription_that_cannot_be_read_is_reported_and_left_out(
    bench: Emulator, emulator_server: EmulatorServer
) -> None:
    bench.load_scenario(scenario())
    # no retries: the first query over both subscriptions fails, then again for A alone; B reads
    bench.faults.set([Fault(path_regex="microsoft.resourcegraph", status=503, remaining=2)])

    result = scan(bench, emulator_server, BACKUPWARDEN_HTTP_RETRY_TOTAL="0")

    assert [f.scope for f in result.failures] == [f"/subscriptions/{SUB_A}"]
    assert not result.complete
    assert {c.vm.name for c in result.classifications} == set(ESTATE_B)
    assert (result.report.total.in_scope, result.report.total.covered) == (2, 1)


def test_the_vm_read_carries_security_and_disk_types_for_pre_flight(
    bench: Emulator, emulator_server: EmulatorServer
) -> None:
    estate = scenario()
    estate["subscriptions"][1]["vms"].append(
        {
            "name": "trusted",
            "location": "northeurope",
            "resource_group": "rg-a",
            "security_type": "TrustedLaunch",
            "os_disk_type": "StandardSSD_LRS",
            "data_disk_types": ["PremiumV2_LRS", "UltraSSD_LRS"],
        }
    )
    bench.load_scenario(estate)
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BACKUPWARDEN_ARM_ENDPOINT": emulator_server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "x",
            "BACKUPWARDEN_CA_BUNDLE": emulator_server.ca_bundle,
        }
    )
    with AzureClients(settings) as clients:
        inventory = ProtectionInventoryReader(clients.resource_graph(), clients.backup).read([SUB_B])

    kinds = {vm_id.rsplit("/", 1)[-1]: kind for vm_id, kind in inventory.vm_kinds.items()}
    assert kinds["trusted"] == VmKind("TrustedLaunch", "StandardSSD_LRS", ("PremiumV2_LRS", "UltraSSD_LRS"))
    assert kinds["bplain"].security_type == "" and kinds["bplain"].data_disk_types == ()
