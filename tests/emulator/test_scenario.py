"""Scenario documents, the shipped `demo` estate and the generator, checked through the real SDK clients.

Every scenario here is loaded with the clock frozen (`clock.scale: 0`), so the relative times the
documents declare ("-3h") land on exact instants the tests can compare with the service's answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    BackupRequestResource,
    BackupStatusRequest,
    IaasVMBackupRequest,
)
from azure.mgmt.resource.subscriptions import SubscriptionClient

from emulator import Emulator, EmulatorServer
from emulator.core.throttle import DEFAULT_BUCKETS, BucketSpec
from emulator.generator import subscription_id
from emulator.scenario import SCENARIO_DIR, ScenarioError, load_scenario_file

ROOT = Path(__file__).resolve().parents[2]
PROD = "11111111-1111-4111-8111-111111111111"
DEV = "22222222-2222-4222-8222-222222222222"
DEMO_START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PROD_WEU = {"vault_name": "rsv-prod-weu", "resource_group_name": "rg-backup-weu"}
PROD_NEU = {"vault_name": "rsv-prod-neu", "resource_group_name": "rg-backup-neu"}
DEV_EUS = {"vault_name": "rsv-dev-eus", "resource_group_name": "rg-backup-eus"}
# Other code (the app's demo, the compute and event tests) refers to these names.
DEMO_VMS = {
    *(f"web-0{n}" for n in range(1, 5)),
    "api-01",
    "api-02",
    "api-03",
    "pay-01",
    "legacy-01",
    "db-01",
    "db-02",
    *(f"app-0{n}" for n in range(1, 4)),
    "new-01",
    *(f"batch-0{n}" for n in range(1, 4)),
    "report-01",
    "build-01",
    *(f"dev-0{n}" for n in range(1, 8)),
    "test-01",
    "test-02",
}
IAAS_ITEMS = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"
NEVER = "2001-01-01T00:00:00Z"

Loader = Callable[[dict[str, Any]], None]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def load(emulator: Emulator) -> Iterator[Loader]:
    """Loads a scenario with the clock frozen at its start; the clock runs again afterwards."""

    def load_frozen(document: dict[str, Any]) -> None:
        emulator.load_scenario({**document, "clock": {**(document.get("clock") or {}), "scale": 0}})

    yield load_frozen
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


@pytest.fixture
def demo(load: Loader) -> None:
    load(load_scenario_file("demo"))


def backup_client(sdk_kwargs: dict[str, Any], subscription: str = PROD) -> RecoveryServicesBackupClient:
    return RecoveryServicesBackupClient(subscription_id=subscription, **sdk_kwargs)


def items_by_name(
    backup: RecoveryServicesBackupClient, vault: dict[str, str], odata: str = IAAS_ITEMS
) -> dict[str, dict[str, Any]]:
    """Item properties by VM name, as raw mappings (the SDK models IaaS VM items as the base type)."""
    found: dict[str, dict[str, Any]] = {}
    for item in backup.backup_protected_items.list(filter=odata, **vault):
        assert item.properties is not None
        found[item.properties["friendlyName"]] = dict(item.properties)
    return found


def jobs_of(backup: RecoveryServicesBackupClient, vault: dict[str, str], odata: str) -> list[dict[str, Any]]:
    return [dict(job.properties) for job in backup.backup_jobs.list(filter=odata, **vault)]  # type: ignore[arg-type]


def item_args(vault: dict[str, str], resource_group: str, vm: str) -> dict[str, str]:
    return {
        **vault,
        "fabric_name": "Azure",
        "container_name": f"iaasvmcontainer;iaasvmcontainerv2;{resource_group};{vm}",
        "protected_item_name": f"vm;iaasvmcontainerv2;{resource_group};{vm}",
    }


def trigger(backup: RecoveryServicesBackupClient, args: dict[str, str], now: datetime) -> None:
    body = BackupRequestResource(
        properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=now + timedelta(days=30))
    )
    backup.backups.trigger(parameters=body, **args)


def last_backup_job(backup: RecoveryServicesBackupClient, vault: dict[str, str], vm: str) -> dict[str, Any]:
    jobs = [job for job in jobs_of(backup, vault, "operation eq 'Backup'") if job["entityFriendlyName"] == vm]
    return max(jobs, key=lambda job: job["startTime"])


# --- the demo estate ------------------------------------------------------------------------------
def test_demo_spans_about_30_vms_over_2_subscriptions_and_3_regions(
    demo: None, sdk_kwargs: dict[str, Any]
) -> None:
    subscriptions = {
        s.subscription_id: s.display_name for s in SubscriptionClient(**sdk_kwargs).subscriptions.list()
    }
    vms = [
        vm
        for sub in (PROD, DEV)
        for vm in ComputeManagementClient(subscription_id=sub, **sdk_kwargs).virtual_machines.list_all()
    ]

    assert subscriptions == {PROD: "contoso-prod", DEV: "contoso-dev"}
    assert 25 <= len(vms) <= 35
    assert {vm.name for vm in vms} == DEMO_VMS
    assert {vm.location for vm in vms} == {"westeurope", "northeurope", "eastus"}


def test_demo_has_a_vm_still_provisioning_and_vms_opted_out_by_tag(
    demo: None, sdk_kwargs: dict[str, Any]
) -> None:
    prod = ComputeManagementClient(subscription_id=PROD, **sdk_kwargs).virtual_machines
    dev = ComputeManagementClient(subscription_id=DEV, **sdk_kwargs).virtual_machines
    states = {vm.name: vm.provisioning_state for vm in [*prod.list_all(), *dev.list_all()]}
    opted_out = {
        vm.name for vm in [*prod.list_all(), *dev.list_all()] if (vm.tags or {}).get("backupwarden:skip")
    }

    assert prod.get("rg-build", "build-01").provisioning_state == "Creating"
    assert {name for name, state in states.items() if state != "Succeeded"} == {"build-01"}
    assert opted_out == {"legacy-01", "test-01"}
    assert (prod.get("rg-legacy", "legacy-01").tags or {})["backupwarden:skip"] == "true"


def test_demo_unprotected_vms_are_not_protected_anywhere(demo: None, sdk_kwargs: dict[str, Any]) -> None:
    prod, dev = backup_client(sdk_kwargs, PROD), backup_client(sdk_kwargs, DEV)
    protected = {*items_by_name(prod, PROD_WEU), *items_by_name(prod, PROD_NEU), *items_by_name(dev, DEV_EUS)}

    def status(client: RecoveryServicesBackupClient, sub: str, region: str, group: str, vm: str) -> object:
        vm_id = (
            f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{vm}"
        )
        request = BackupStatusRequest(resource_type="VM", resource_id=vm_id)
        return client.backup_status.get(region, request).protection_status

    assert DEMO_VMS - protected == {"new-01", "report-01", "build-01", "test-01", "test-02"}
    assert status(prod, PROD, "westeurope", "rg-app", "new-01") == "NotProtected"
    assert status(prod, PROD, "northeurope", "rg-report", "report-01") == "NotProtected"
    assert status(dev, DEV, "eastus", "rg-test", "test-02") == "NotProtected"
    assert status(prod, PROD, "westeurope", "rg-web", "web-01") == "Protected"


def test_demo_lists_items_pending_their_initial_backup_as_the_service_does(
    demo: None, sdk_kwargs: dict[str, Any]
) -> None:
    backup = backup_client(sdk_kwargs)

    pending = items_by_name(backup, PROD_WEU, f"{IAAS_ITEMS} and protectionState eq 'IRPending'")

    assert set(pending) == {
        "web-01",
        "web-02",
        "web-03",
        "web-04",
        "api-01",
        "api-02",
        "legacy-01",
        "db-01",
        "db-02",
        "api-03",
        "pay-01",
    }
    for name, properties in pending.items():
        assert properties["protectionState"] == "IRPending"
        assert properties["lastBackupTime"] == NEVER
        assert "lastRecoveryPoint" not in properties
        assert properties["lastBackupStatus"] == ("Failed" if name == "db-01" else "")
    assert pending["db-01"]["policyName"] == "EnhancedPolicy"
    assert pending["web-01"]["policyName"] == "DefaultPolicy"


def test_demo_has_items_pending_since_hours_and_items_pending_for_minutes(
    demo: None, sdk_kwargs: dict[str, Any]
) -> None:
    """`since` is when the ConfigureBackup job ended: the moment the item became IRPending."""
    vaults = ((PROD, PROD_WEU), (PROD, PROD_NEU), (DEV, DEV_EUS))
    configured = {
        job["entityFriendlyName"]: datetime.fromisoformat(job["endTime"])
        for sub, vault in vaults
        for job in jobs_of(backup_client(sdk_kwargs, sub), vault, "operation eq 'ConfigureBackup'")
    }
    pending = [
        name
        for sub, vault in vaults
        for name, item in items_by_name(backup_client(sdk_kwargs, sub), vault).items()
        if item["protectionState"] == "IRPending"
    ]
    pending_for = {name: DEMO_START - configured[name] for name in pending}

    assert pending_for["web-01"] == timedelta(hours=3)
    assert pending_for["dev-02"] == timedelta(days=2)
    assert pending_for["api-01"] == timedelta(minutes=20)
    assert pending_for["dev-05"] == timedelta(minutes=30)
    assert {name for name, age in pending_for.items() if age < timedelta(hours=1)} == {"api-01", "dev-05"}
    assert len(pending) - 2 >= 10  # most of the stuck VMs are stuck for hours


def test_demo_protected_items_carry_their_last_recovery_point(demo: None, sdk_kwargs: dict[str, Any]) -> None:
    backup = backup_client(sdk_kwargs)

    item = backup.protected_items.get(**item_args(PROD_WEU, "rg-app", "app-01")).properties
    protected = items_by_name(backup, PROD_WEU, f"{IAAS_ITEMS} and protectionState eq 'Protected'")
    last_job = last_backup_job(backup, PROD_WEU, "app-01")

    assert item is not None
    assert item["protectionState"] == "Protected"
    assert item["lastBackupStatus"] == "Completed"
    assert item["lastBackupTime"] == item["lastRecoveryPoint"] == iso(DEMO_START - timedelta(hours=9))
    assert set(protected) == {"app-01", "app-02", "app-03"}
    assert (last_job["status"], last_job["endTime"]) == ("Completed", item["lastRecoveryPoint"])
    assert items_by_name(backup_client(sdk_kwargs, DEV), DEV_EUS)["dev-06"]["lastRecoveryPoint"] == iso(
        DEMO_START - timedelta(hours=12)
    )


def test_demo_running_backup_blocks_a_second_trigger_then_completes(
    demo: None, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    backup = backup_client(sdk_kwargs)
    args = item_args(PROD_WEU, "rg-api", "api-02")

    [running] = jobs_of(backup, PROD_WEU, "status eq 'InProgress'")
    with pytest.raises(HttpResponseError) as raised:
        trigger(backup, args, DEMO_START)
    emulator.advance(emulator.estate.timings.backup_job_s)

    assert (running["entityFriendlyName"], running["operation"]) == ("api-02", "Backup")
    assert running["startTime"] == iso(DEMO_START - timedelta(minutes=5))
    assert raised.value.error is not None and raised.value.error.code == "UserErrorBackupOperationInProgress"
    assert jobs_of(backup, PROD_WEU, "status eq 'InProgress'") == []
    assert last_backup_job(backup, PROD_WEU, "api-02")["status"] == "Completed"
    assert backup.protected_items.get(**args).properties["protectionState"] == "Protected"  # type: ignore[index]


@pytest.mark.parametrize(
    ("subscription", "vault", "group", "vm", "code"),
    [
        (PROD, PROD_WEU, "rg-db", "db-02", "UserErrorGuestAgentStatusUnavailable"),
        (PROD, PROD_WEU, "rg-api", "api-03", "BackUpOperationFailed"),
        (PROD, PROD_WEU, "rg-pay", "pay-01", "UserErrorRequestDisallowedByPolicy"),
        (DEV, DEV_EUS, "rg-dev", "dev-04", "UserErrorVmNotFoundV2"),
    ],
)
def test_demo_failing_vms_fail_their_next_backup_with_their_code(
    demo: None,
    emulator: Emulator,
    sdk_kwargs: dict[str, Any],
    subscription: str,
    vault: dict[str, str],
    group: str,
    vm: str,
    code: str,
) -> None:
    backup = backup_client(sdk_kwargs, subscription)

    trigger(backup, item_args(vault, group, vm), DEMO_START)
    emulator.advance(emulator.estate.timings.backup_job_s)

    job = last_backup_job(backup, vault, vm)
    assert job["status"] == "Failed"
    assert [error["errorCode"] for error in job["errorDetails"]] == [code]
    item = backup.protected_items.get(**item_args(vault, group, vm)).properties
    assert (item["protectionState"], item["lastBackupStatus"]) == ("IRPending", "Failed")  # type: ignore[index]


def test_demo_vm_whose_last_scheduled_backup_failed_is_still_pending(
    demo: None, sdk_kwargs: dict[str, Any]
) -> None:
    backup = backup_client(sdk_kwargs)

    [failed] = jobs_of(backup, PROD_WEU, "status eq 'Failed'")
    item = backup.protected_items.get(**item_args(PROD_WEU, "rg-db", "db-01")).properties

    assert (failed["entityFriendlyName"], failed["operation"]) == ("db-01", "Backup")
    assert failed["endTime"] == iso(DEMO_START - timedelta(hours=4))
    [error] = failed["errorDetails"]
    assert error["errorCode"] == "BackUpOperationFailedV2"
    assert error["errorString"] == "Backup failed with an internal error."
    assert error["recommendations"]
    assert item is not None
    assert (item["protectionState"], item["lastBackupStatus"], item["lastBackupTime"]) == (
        "IRPending",
        "Failed",
        NEVER,
    )


def test_shipped_scenario_loads_by_name_or_by_path() -> None:
    assert load_scenario_file("demo") == load_scenario_file(str(SCENARIO_DIR / "demo.yaml"))
    with pytest.raises(ScenarioError, match=r"scenario 'nope' is neither a file nor one of .*'demo'"):
        load_scenario_file("nope")


# --- the scenario format ----------------------------------------------------------------------------
def one_vault(vms: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    vault = {
        "name": "v1",
        "resource_group": "rg-v",
        "location": "westeurope",
        "policies": [{"name": "DefaultPolicy"}, {"name": "Gold"}],
    }
    return {"subscriptions": [{"id": PROD, "vaults": [vault], "vms": vms}], **extra}


def vm(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "location": "westeurope", "resource_group": "rg-a", **extra}


V1 = {"vault_name": "v1", "resource_group_name": "rg-v"}


def test_failing_vm_fails_exactly_its_planned_attempts_then_succeeds(
    load: Loader, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    load(
        one_vault(
            [
                vm(
                    "flaky",
                    fail_next={"code": "GuestAgentSnapshotTaskStatusError", "attempts": 2},
                    protection={"vault": "v1"},
                )
            ]
        )
    )
    backup = backup_client(sdk_kwargs)
    outcomes = []

    for _ in range(3):
        trigger(backup, item_args(V1, "rg-a", "flaky"), emulator.now())
        emulator.advance(emulator.estate.timings.backup_job_s)
        outcomes.append(last_backup_job(backup, V1, "flaky")["status"])

    assert outcomes == ["Failed", "Failed", "Completed"]
    failed = jobs_of(backup, V1, "status eq 'Failed'")
    assert {error["errorCode"] for job in failed for error in job["errorDetails"]} == {
        "GuestAgentSnapshotTaskStatusError"
    }


def test_times_are_iso_8601_or_relative_to_the_clock_start(
    load: Loader, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    load(
        one_vault(
            [
                vm("rel-s", protection={"vault": "v1", "since": "-45s"}),
                vm("rel-m", protection={"vault": "v1", "since": "-90m"}),
                vm("rel-h", protection={"vault": "v1", "since": "-1.5h"}),
                vm(
                    "rel-d",
                    protection={"vault": "v1", "since": "-2d", "state": "Protected", "last_backup": "-30m"},
                ),
                vm("iso-z", protection={"vault": "v1", "since": "2026-03-01T09:30:00Z"}),
                vm("iso-offset", protection={"vault": "v1", "since": "2026-03-01T10:30:00+01:00"}),
                vm("iso-naive", protection={"vault": "v1", "since": "2026-02-28T23:00:00"}),
            ],
            clock={"start": "2026-03-01T12:00:00Z"},
        )
    )
    backup = backup_client(sdk_kwargs)

    configured = {
        job["entityFriendlyName"]: job["endTime"]
        for job in jobs_of(backup, V1, "operation eq 'ConfigureBackup'")
    }

    assert emulator.now() == start
    assert configured == {
        "rel-s": iso(start - timedelta(seconds=45)),
        "rel-m": iso(start - timedelta(minutes=90)),
        "rel-h": iso(start - timedelta(minutes=90)),
        "rel-d": iso(start - timedelta(days=2)),
        "iso-z": "2026-03-01T09:30:00Z",
        "iso-offset": "2026-03-01T09:30:00Z",
        "iso-naive": "2026-02-28T23:00:00Z",  # no offset: UTC
    }
    assert items_by_name(backup, V1)["rel-d"]["lastRecoveryPoint"] == iso(start - timedelta(minutes=30))


def test_yaml_timestamps_without_quotes_are_times_too(
    tmp_path: Path, load: Loader, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    path = tmp_path / "unquoted.yaml"
    path.write_text(
        f"""
clock:
  start: 2026-05-01T06:00:00Z
subscriptions:
- id: {PROD}
  vaults:
  - {{name: v1, resource_group: rg-v, location: westeurope}}
  vms:
  - name: a
    location: westeurope
    resource_group: rg-a
    protection: {{vault: v1, since: 2026-04-30 18:00:00}}
""",
        encoding="utf-8",
    )

    load(load_scenario_file(str(path)))

    assert emulator.now() == datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
    [job] = jobs_of(backup_client(sdk_kwargs), V1, "operation eq 'ConfigureBackup'")
    assert job["endTime"] == "2026-04-30T18:00:00Z"


def test_realism_and_service_sections_take_effect(
    load: Loader, emulator: Emulator, emulator_server: EmulatorServer, sdk_kwargs: dict[str, Any]
) -> None:
    load(
        one_vault(
            [vm(f"vm-{n}", protection={"vault": "v1"}) for n in range(7)],
            realism={
                "throttle": {"enabled": False},
                "faults": [{"path": "backupJobs", "status": 503, "count": 1}],
                "latency": {"default_ms": 0, "routes": {"backupJobs": 1}},
            },
            timings={"backup_job_s": 60, "retry_after_s": 0},
            recoveryservices={"page_size": 3},
        )
    )
    backup = backup_client(sdk_kwargs)
    jobs_url = (
        f"{emulator_server.endpoint}/subscriptions/{PROD}/resourceGroups/rg-v/providers/"
        "Microsoft.RecoveryServices/vaults/v1/backupJobs?api-version=2024-04-01"
    )
    http = requests.Session()
    http.trust_env = False

    injected = http.get(jobs_url, headers={"Authorization": "Bearer t"}, verify=emulator_server.ca_bundle)
    listed = items_by_name(backup, V1)
    pages = emulator.requests.counts()[
        "GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
        "Microsoft.RecoveryServices/vaults/{vaultName}/backupProtectedItems"
    ]

    assert injected.status_code == 503
    assert len(listed) == 7 and pages == 3  # 3 + 3 + 1 items
    assert emulator.throttle.enabled is False
    assert emulator.latency.for_route("/backupJobs") == 1
    assert emulator.estate.timings.backup_job_s == 60


def test_scenario_bucket_sizes_apply_and_replace_run_time_ones(
    load: Loader, emulator: Emulator, emulator_server: EmulatorServer
) -> None:
    emulator.throttle.specs["write"] = BucketSpec(1, 0)  # as a PUT /_emulator/throttle leaves it
    load(one_vault([], realism={"throttle": {"read": {"capacity": 2, "refill_per_s": 0}}}))
    vaults_url = (
        f"{emulator_server.endpoint}/subscriptions/{PROD}/providers/Microsoft.RecoveryServices/vaults"
        "?api-version=2024-04-01"
    )
    http = requests.Session()
    http.trust_env = False

    answers = [
        http.get(vaults_url, headers={"Authorization": "Bearer t"}, verify=emulator_server.ca_bundle)
        for _ in range(3)
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].headers["x-ms-ratelimit-remaining-subscription-reads"] == "1"
    assert "Retry-After" in answers[2].headers
    assert emulator.throttle.specs["write"] == DEFAULT_BUCKETS["write"]


# --- errors name the offending field -----------------------------------------------------------
PROTECTED = {"vault": "v1"}
BAD_SCENARIOS: list[tuple[str, dict[str, Any], str]] = [
    ("subscriptions not a list", {"subscriptions": {"id": PROD}}, "subscriptions must be a list"),
    ("missing subscription id", {"subscriptions": [{"name": "x"}]}, "subscriptions[0].id is required"),
    ("duplicate subscription", {"subscriptions": [{"id": PROD}, {"id": PROD}]}, "subscriptions[1].id"),
    (
        "missing vault location",
        {"subscriptions": [{"id": PROD, "vaults": [{"name": "v"}]}]},
        "subscriptions[0].vaults[0].location is required",
    ),
    (
        "missing policy name",
        {
            "subscriptions": [
                {"id": PROD, "vaults": [{"name": "v", "location": "westeurope", "policies": [{}]}]}
            ]
        },
        "subscriptions[0].vaults[0].policies[0].name is required",
    ),
    ("missing vm name", one_vault([{"location": "westeurope"}]), "subscriptions[0].vms[0].name is required"),
    ("missing vm location", one_vault([{"name": "a"}]), "subscriptions[0].vms[0].location is required"),
    ("duplicate vm", one_vault([vm("a"), vm("a")]), "subscriptions[0].vms[1].name"),
    (
        "tags not a mapping",
        one_vault([vm("a", tags=["env"])]),
        "subscriptions[0].vms[0].tags must be a mapping",
    ),
    (
        "unknown vault",
        one_vault([vm("a", protection={"vault": "nope"})]),
        "subscriptions[0].vms[0].protection.vault 'nope' is not a vault of subscription",
    ),
    (
        "vault of another subscription",
        {
            "subscriptions": [
                {"id": PROD, "vaults": [{"name": "v1", "location": "westeurope"}]},
                {"id": DEV, "vms": [vm("a", protection=PROTECTED)]},
            ]
        },
        f"subscriptions[1].vms[0].protection.vault 'v1' is not a vault of subscription {DEV}",
    ),
    (
        "vault in another region",
        one_vault([vm("a", location="eastus", protection=PROTECTED)]),
        "subscriptions[0].vms[0].protection.vault: v1 is in westeurope, the VM in eastus",
    ),
    (
        "unknown policy",
        one_vault([vm("a", protection={"vault": "v1", "policy": "Platinum"})]),
        "subscriptions[0].vms[0].protection.policy 'Platinum' is not a policy of vault v1",
    ),
    (
        "bad state",
        one_vault([vm("a", protection={"vault": "v1", "state": "Pending"})]),
        "subscriptions[0].vms[0].protection.state 'Pending' is not one of",
    ),
    (
        "bad since",
        one_vault([vm("a", protection={"vault": "v1", "since": "yesterday"})]),
        "subscriptions[0].vms[0].protection.since: 'yesterday' is neither ISO-8601 nor a relative time",
    ),
    (
        "future relative time",
        one_vault([vm("a", protection={"vault": "v1", "since": "+3h"})]),
        "subscriptions[0].vms[0].protection.since: '+3h'",
    ),
    (
        "bad last_backup",
        one_vault([vm("a", protection={"vault": "v1", "state": "Protected", "last_backup": "3h"})]),
        "subscriptions[0].vms[0].protection.last_backup: '3h'",
    ),
    (
        "backup before protection",
        one_vault(
            [vm("a", protection={"vault": "v1", "state": "Protected", "since": "-2h", "last_backup": "-3h"})]
        ),
        "subscriptions[0].vms[0].protection.last_backup",
    ),
    (
        "bad failure time",
        one_vault(
            [
                vm(
                    "a",
                    protection={
                        "vault": "v1",
                        "last_backup_failed": {"code": "BackUpOperationFailed", "at": "noon"},
                    },
                )
            ]
        ),
        "subscriptions[0].vms[0].protection.last_backup_failed.at: 'noon'",
    ),
    (
        "failure without code",
        one_vault([vm("a", protection={"vault": "v1", "last_backup_failed": {"at": "-1h"}})]),
        "subscriptions[0].vms[0].protection.last_backup_failed.code is required",
    ),
    (
        "fail_next without code",
        one_vault([vm("a", fail_next={"attempts": 2})]),
        "subscriptions[0].vms[0].fail_next.code is required",
    ),
    (
        "fail_next with no attempts",
        one_vault([vm("a", fail_next={"code": "X", "attempts": 0})]),
        "subscriptions[0].vms[0].fail_next.attempts must be an integer >= 1",
    ),
    ("bad os type", one_vault([vm("a", os_type="BeOS")]), "subscriptions[0].vms[0].os_type 'BeOS'"),
    (
        "bad created",
        one_vault([vm("a", created="last week")]),
        "subscriptions[0].vms[0].created: 'last week'",
    ),
    ("bad clock start", {"clock": {"start": "tomorrow"}}, "clock.start: 'tomorrow'"),
    ("bad clock scale", {"clock": {"scale": "fast"}}, "clock.scale must be a number"),
    ("unknown timings key", {"timings": {"backup_minutes": 3}}, "timings: unknown keys ['backup_minutes']"),
    ("bad timings value", {"timings": {"backup_job_s": "long"}}, "timings.backup_job_s must be a number"),
    ("bad job outcome", {"timings": {"job_outcome": "Done"}}, "timings.job_outcome 'Done'"),
    (
        "bad throttle",
        {"realism": {"throttle": {"read": {"capacity": 5}}}},
        "realism.throttle.read.refill_per_s must be a number",
    ),
    ("bad fault", {"realism": {"faults": [{"path": "x", "status": 404}]}}, "realism.faults: fault status"),
    ("bad latency", {"realism": {"latency": {"default_ms": "slow"}}}, "realism.latency:"),
    ("bad service section", {"recoveryservices": {"page_size": 0}}, "recoveryservices.page_size"),
    ("unknown service setting", {"recoveryservices": {"pagesize": 5}}, "recoveryservices: unknown settings"),
    ("bad generator argument", {"generate": {"vms": 5}}, "generate: "),
    ("impossible generator share", {"generate": {"stuck_percent": 120}}, "generate: stuck_percent"),
    ("misspelt section", {"subscription": [{"id": PROD}]}, "scenario: unknown keys ['subscription']"),
    (
        "misspelt vm key",
        one_vault([vm("a", protecton=PROTECTED)]),
        "subscriptions[0].vms[0]: unknown keys ['protecton']",
    ),
    (
        "misspelt protection key",
        one_vault([vm("a", protection={"vault": "v1", "sinse": "-3h"})]),
        "subscriptions[0].vms[0].protection: unknown keys ['sinse']",
    ),
    (
        "misspelt vault key",
        {
            "subscriptions": [
                {"id": PROD, "vaults": [{"name": "v", "location": "westeurope", "policy": [{"name": "P"}]}]}
            ]
        },
        "subscriptions[0].vaults[0]: unknown keys ['policy']",
    ),
    ("misspelt realism key", {"realism": {"fault": []}}, "realism: unknown keys ['fault']"),
    ("negative clock scale", {"clock": {"scale": -1}}, "clock.scale must be >= 0"),
]


@pytest.mark.parametrize(
    ("document", "names"), [case[1:] for case in BAD_SCENARIOS], ids=[case[0] for case in BAD_SCENARIOS]
)
def test_scenario_errors_name_the_offending_field(
    emulator: Emulator, document: dict[str, Any], names: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        emulator.load_scenario(document)

    assert names in str(raised.value)


def test_admin_api_answers_a_bad_scenario_with_400_naming_the_field(
    emulator: Emulator, emulator_server: EmulatorServer
) -> None:
    url = f"{emulator_server.endpoint}/_emulator/scenario"
    http = requests.Session()
    http.trust_env = False
    http.verify = emulator_server.ca_bundle

    unknown_vault = http.put(url, json=one_vault([vm("a", protection={"vault": "nope"})]))
    bad_section = http.put(url, json={"recoveryservices": {"page_size": "many"}})

    for answer, field in ((unknown_vault, "protection.vault"), (bad_section, "recoveryservices.page_size")):
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "InvalidScenario"
        assert field in answer.json()["error"]["message"]


# --- the generator ----------------------------------------------------------------------------------
def test_generator_builds_exactly_n_subscriptions_m_vaults_k_vms_with_p_percent_stuck(
    load: Loader, sdk_kwargs: dict[str, Any]
) -> None:
    load(
        {
            "generate": {
                "subscriptions": 2,
                "vaults_per_subscription": 3,
                "vms_per_vault": 20,
                "stuck_percent": 25,
                "stuck_since_hours": 5,
            }
        }
    )
    listed = [str(s.subscription_id) for s in SubscriptionClient(**sdk_kwargs).subscriptions.list()]
    counts: dict[str, int] = {"vaults": 0, "vms": 0, "IRPending": 0, "Protected": 0}

    for sub in listed:
        vaults = list(
            RecoveryServicesClient(subscription_id=sub, **sdk_kwargs).vaults.list_by_subscription_id()
        )
        vms = list(ComputeManagementClient(subscription_id=sub, **sdk_kwargs).virtual_machines.list_all())
        counts["vaults"] += len(vaults)
        counts["vms"] += len(vms)
        assert {vault.location for vault in vaults} == {vm.location for vm in vms}
        for vault in vaults:
            where = {"vault_name": str(vault.name), "resource_group_name": str(vault.id).split("/")[4]}
            items = items_by_name(backup_client(sdk_kwargs, sub), where)
            assert len(items) == 20
            for state in ("IRPending", "Protected"):
                counts[state] += sum(1 for item in items.values() if item["protectionState"] == state)

    assert sorted(listed) == sorted([subscription_id(0), subscription_id(1)])
    assert counts == {"vaults": 6, "vms": 120, "IRPending": 30, "Protected": 90}


def test_generator_stuck_items_are_pending_since_the_given_hours(
    load: Loader, sdk_kwargs: dict[str, Any]
) -> None:
    load({"generate": {"vms_per_vault": 4, "stuck_percent": 50, "stuck_since_hours": 5}})
    sub = subscription_id(0)
    where = {"vault_name": "vault-000-000", "resource_group_name": "rg-backup-000"}
    backup = backup_client(sdk_kwargs, sub)

    configured = {
        job["entityFriendlyName"]: job["endTime"]
        for job in jobs_of(backup, where, "operation eq 'ConfigureBackup'")
    }
    items = items_by_name(backup, where)

    stuck = sorted(name for name, item in items.items() if item["protectionState"] == "IRPending")
    assert stuck == ["vm-000-000-00000", "vm-000-000-00001"]
    assert {configured[name] for name in stuck} == {iso(DEMO_START - timedelta(hours=5))}
    assert all(items[name]["lastRecoveryPoint"] for name in items if name not in stuck)


def test_generator_rounds_shares_half_up_and_leaves_unprotected_vms_undiscovered(
    load: Loader, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    load(
        {
            "generate": {
                "vaults_per_subscription": 2,
                "vms_per_vault": 10,
                "stuck_percent": 25,
                "unprotected_percent": 15,
            }
        }
    )
    sub = subscription_id(0)
    backup = backup_client(sdk_kwargs, sub)
    items = items_by_name(backup, {"vault_name": "vault-000-001", "resource_group_name": "rg-backup-001"})
    unprotected_vm = (
        f"/subscriptions/{sub}/resourceGroups/rg-app-001/providers/Microsoft.Compute/virtualMachines/"
        "vm-000-001-00000"
    )

    status = backup.backup_status.get(
        "northeurope", BackupStatusRequest(resource_type="VM", resource_id=unprotected_vm)
    )

    # 15 % of 10 is 1.5 -> 2 unprotected; 25 % is 2.5 -> 3 stuck; the other 5 protected.
    assert len(items) == 8
    assert sum(1 for item in items.values() if item["protectionState"] == "IRPending") == 3
    assert status.protection_status == "NotProtected"
    assert len(emulator.estate.vms) == 20 and len(emulator.estate.protected_items) == 16


def test_generator_refuses_more_vms_than_a_vault_can_protect(emulator: Emulator) -> None:
    with pytest.raises(ScenarioError, match=r"generate: 1001 protected VMs per vault exceed .* 1000"):
        emulator.load_scenario({"generate": {"vms_per_vault": 1001, "with_history": False}})


def test_generate_command_prints_a_scenario_that_loads(
    tmp_path: Path, load: Loader, sdk_kwargs: dict[str, Any]
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "generate",
            "--subscriptions",
            "2",
            "--vaults-per-subscription",
            "2",
            "--vms-per-vault",
            "10",
            "--stuck-percent",
            "30",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path = tmp_path / "generated.json"
    path.write_text(done.stdout, encoding="utf-8")

    document = load_scenario_file(str(path))
    load(document)

    assert json.loads(done.stdout) == document
    for s in range(2):
        backup = backup_client(sdk_kwargs, subscription_id(s))
        for v in range(2):
            where = {"vault_name": f"vault-{s:03d}-{v:03d}", "resource_group_name": f"rg-backup-{v:03d}"}
            pending = items_by_name(backup, where, f"{IAAS_ITEMS} and protectionState eq 'IRPending'")
            assert len(pending) == 3
            assert len(items_by_name(backup, where)) == 10
