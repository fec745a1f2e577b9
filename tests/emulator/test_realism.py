"""The realism knobs that make the emulator as unkind as Azure, each through the real SDK clients or HTTP.

One test (or a few) per knob of docs/emulator.md section 7, and the `unkind` profile that switches
them on together, from a scenario and at run time. Every knob is off by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSComputeVMProtectedItem,
    BackupRequestResource,
    IaasVMBackupRequest,
    ProtectedItemResource,
)
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsQueryClient, LogsQueryResult

from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault, Faults
from emulator.monitor.models import MonitorBackend
from emulator.profiles import UNKIND, apply_profile
from emulator.recoveryservices.models import RecoveryServicesBackend
from emulator.resourcegraph.models import ResourceGraphBackend
from emulator.scenario import ScenarioError
from tests.conftest import StaticToken
from tests.emulator.recoveryservices_estate import last_segment, response_headers, response_status

SUB = "11111111-1111-4111-8111-111111111111"
VAULT = {"vault_name": "rsv-weu", "resource_group_name": "rg-backup"}
START = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
WORKSPACE_ID = "5a1e0c7e-2b7d-4e61-9a0c-8d1f7b0e4a21"
DCR_ID = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-Outcomes"
TABLE = "Outcomes_CL"
MONITOR = {
    "workspaces": [{"name": "law", "id": WORKSPACE_ID}],
    "dcrs": [
        {
            "name": "dcr",
            "immutable_id": DCR_ID,
            "streams": {
                STREAM: {
                    "columns": [
                        {"name": "TimeGenerated", "type": "datetime"},
                        {"name": "Upload", "type": "int"},
                    ],
                    "output_table": TABLE,
                }
            },
        }
    ],
}


def scenario(**sections: Any) -> dict[str, Any]:
    """A vault, a VM pending its initial backup and an unprotected VM; the clock frozen at START."""
    document: dict[str, Any] = {
        "clock": {"start": START.isoformat(), "scale": 0},
        "subscriptions": [
            {
                "id": SUB,
                "vaults": [{"name": "rsv-weu", "resource_group": "rg-backup", "location": "westeurope"}],
                "vms": [
                    {
                        "name": "vm-pending",
                        "location": "westeurope",
                        "protection": {"vault": "rsv-weu", "state": "IRPending", "since": "-3h"},
                    },
                    {"name": "vm-new", "location": "westeurope"},
                ],
            }
        ],
        "monitor": MONITOR,
    }
    for name, section in sections.items():
        document[name] = {**document.get(name, {}), **section}
    return document


@pytest.fixture
def world(emulator: Emulator) -> Iterator[Emulator]:
    """The emulator after `load(...)`; the clock runs again afterwards, as other tests expect."""
    yield emulator
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


@pytest.fixture
def backup(sdk_kwargs: dict[str, Any]) -> RecoveryServicesBackupClient:
    return RecoveryServicesBackupClient(subscription_id=SUB, **sdk_kwargs)


@pytest.fixture
def graph(sdk_kwargs: dict[str, Any]) -> ResourceGraphClient:
    return ResourceGraphClient(**sdk_kwargs)


@pytest.fixture
def http(emulator_server: EmulatorServer) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
    session.verify = emulator_server.ca_bundle
    session.headers["Authorization"] = "Bearer test"
    return session


def item_args(vm: str) -> dict[str, str]:
    """The names a client sends: lower-case, as azure-facts §2 spells them."""
    return {
        **VAULT,
        "fabric_name": "Azure",
        "container_name": f"iaasvmcontainer;iaasvmcontainerv2;rg-app;{vm}",
        "protected_item_name": f"vm;iaasvmcontainerv2;rg-app;{vm}",
    }


def enable_protection(backup: RecoveryServicesBackupClient, vm: str) -> dict[str, str]:
    """PUT the protected item; the 202's headers."""
    captured: dict[str, str] = {}
    vm_id = f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/{vm}"
    policy_id = (
        f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices"
        "/vaults/rsv-weu/backupPolicies/DefaultPolicy"
    )
    backup.protected_items.begin_create_or_update(
        parameters=ProtectedItemResource(
            properties=AzureIaaSComputeVMProtectedItem(source_resource_id=vm_id, policy_id=policy_id)
        ),
        polling=False,
        raw_response_hook=lambda response: captured.update(response.http_response.headers),
        **item_args(vm),
    )
    return captured


def trigger_backup(backup: RecoveryServicesBackupClient, vm: str) -> dict[str, str]:
    body = BackupRequestResource(
        properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=START + timedelta(days=30))
    )
    return cast(
        dict[str, str], backup.backups.trigger(parameters=body, cls=response_headers, **item_args(vm))
    )


def refresh_containers(backup: RecoveryServicesBackupClient) -> dict[str, str]:
    return cast(
        dict[str, str],
        backup.protection_containers.refresh(fabric_name="Azure", cls=response_headers, **VAULT),
    )


def poll(backup: RecoveryServicesBackupClient, url: str) -> int:
    """GET an operation URL exactly as received, through the client's own pipeline."""
    return int(backup.send_request(HttpRequest("GET", url)).status_code)


def graph_rows(graph: ResourceGraphClient, text: str) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], graph.resources(QueryRequest(subscriptions=[SUB], query=text)).data)


# --- signed operation URLs ------------------------------------------------------------------------
def test_signed_operation_urls_carry_t_c_s_h_and_are_accepted_back_when_polled(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(scenario(recoveryservices={"signed_operation_urls": True}))

    headers = enable_protection(backup, "vm-new")
    location, status_url = headers["Location"], headers["Azure-AsyncOperation"]
    for url in (location, status_url):
        query = parse_qs(urlsplit(url).query)
        assert set(query) == {"api-version", "t", "c", "s", "h"}
        assert int(query["t"][0]) > 638_000_000_000_000_000  # .NET ticks, as recorded
    assert poll(backup, location) == 202
    assert poll(backup, status_url) == 200
    world.advance(world.estate.timings.configure_operation_s)
    assert poll(backup, location) == 200
    refresh = refresh_containers(backup)["Location"]
    assert "&s=" in refresh and poll(backup, refresh) == 202

    tampered = location.replace("&s=", "&s=x")
    with pytest.raises(HttpResponseError) as refused:
        backup.send_request(HttpRequest("GET", tampered)).raise_for_status()
    assert refused.value.status_code == 400
    assert "InvalidOperationUrlSignature" in str(refused.value)
    # A client that rebuilds the URL from the operation id sends no signature: still served.
    rebuilt = backup.protected_item_operation_results.get(
        operation_id=last_segment(location), cls=response_status, **item_args("vm-new")
    )
    assert rebuilt == 200


def test_operation_urls_are_unsigned_by_default(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(scenario())

    headers = enable_protection(backup, "vm-new")

    assert set(parse_qs(urlsplit(headers["Location"]).query)) == {"api-version"}


# --- Retry-After: 60 on the 202s ------------------------------------------------------------------
def test_unscaled_retry_after_sends_60_on_every_202_even_with_the_clock_frozen(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(scenario())
    assert refresh_containers(backup)["Retry-After"] == "0"  # scaled: a frozen clock waits for nothing

    world.load_scenario(scenario(recoveryservices={"unscaled_retry_after": True}))

    answers = [
        refresh_containers(backup),
        enable_protection(backup, "vm-new"),
        trigger_backup(backup, "vm-pending"),
    ]
    assert [answer["Retry-After"] for answer in answers] == ["60", "60", "60"]
    assert poll(backup, answers[1]["Location"]) == 202
    assert backup.send_request(HttpRequest("GET", answers[1]["Location"])).headers["Retry-After"] == "60"


# --- the service's upper-case item names ------------------------------------------------------
def test_items_come_back_named_upper_case_vm_and_either_case_finds_them(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(scenario(timings={"configure_operation_s": 0}))
    enable_protection(backup, "vm-new")  # PUT with the lower-case `vm;` name
    world.advance(1)

    listed = [item.name for item in backup.backup_protected_items.list(**VAULT)]
    upper = {**item_args("vm-new"), "protected_item_name": "VM;iaasvmcontainerv2;rg-app;vm-new"}

    assert sorted(str(name) for name in listed) == [
        "VM;iaasvmcontainerv2;rg-app;vm-new",
        "VM;iaasvmcontainerv2;rg-app;vm-pending",
    ]
    assert backup.protected_items.get(**item_args("vm-new")).name == "VM;iaasvmcontainerv2;rg-app;vm-new"
    assert backup.protected_items.get(**upper).name == "VM;iaasvmcontainerv2;rg-app;vm-new"


# --- a triggered job shows in job lists only after a delay -------------------------------------
def test_a_triggered_job_is_found_by_id_at_once_and_listed_only_after_the_lag(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(scenario(recoveryservices={"job_list_lag_s": 120}))
    operation_id = last_segment(trigger_backup(backup, "vm-pending")["Location"])
    job_id = backup.backup_operation_statuses.get(operation_id=operation_id, **VAULT)["properties"]["jobId"]
    running = "backupManagementType eq 'AzureIaasVM' and operation eq 'Backup' and status eq 'InProgress'"

    def listed() -> list[str]:
        return [str(job.name) for job in backup.backup_jobs.list(filter=running, **VAULT)]

    assert backup.job_details.get(job_name=job_id, **VAULT).properties["status"] == "InProgress"  # type: ignore[index]
    assert listed() == []
    world.advance(119)
    assert listed() == []
    world.advance(1)
    assert listed() == [job_id]


# --- Resource Graph lagging ARM, for items and for jobs ------------------------------------------
def test_resource_graph_shows_new_items_and_jobs_and_a_job_end_only_after_the_lag(
    world: Emulator, backup: RecoveryServicesBackupClient, graph: ResourceGraphClient
) -> None:
    world.load_scenario(
        scenario(resource_graph={"lag_s": 180}, timings={"configure_operation_s": 35, "backup_job_s": 600})
    )
    items = (
        "recoveryservicesresources | where type endswith 'protecteditems' | project name | order by name asc"
    )
    jobs = (
        "recoveryservicesresources | where type endswith 'backupjobs' and properties.operation == 'Backup'"
        " | project status = tostring(properties.status)"
    )
    assert len(graph_rows(graph, items)) == 1
    assert graph_rows(graph, jobs) == []

    enable_protection(backup, "vm-new")
    trigger_backup(backup, "vm-pending")
    world.advance(35)
    assert backup.protected_items.get(**item_args("vm-new")).name  # ARM has the item now
    assert len(graph_rows(graph, items)) == 1
    assert graph_rows(graph, jobs) == []

    world.advance(179)  # the job started 214 s ago, the item was created 179 s ago
    assert len(graph_rows(graph, items)) == 1
    assert graph_rows(graph, jobs) == [{"status": "InProgress"}]
    world.advance(1)
    assert len(graph_rows(graph, items)) == 2

    world.advance(600 - 215)  # the job ends in ARM ...
    assert graph_rows(graph, jobs) == [{"status": "InProgress"}]
    world.advance(180)  # ... and in the graph three minutes later
    assert graph_rows(graph, jobs) == [{"status": "Completed"}]


# --- Log Analytics ingestion lag ---------------------------------------------------------------
def test_uploaded_records_become_queryable_between_30_s_and_5_min_later_with_their_ingestion_time(
    world: Emulator, emulator_server: EmulatorServer
) -> None:
    world.load_scenario(scenario(monitor={"ingestion_delay_s": 30, "ingestion_delay_max_s": 300}))
    ingestion = LogsIngestionClient(
        endpoint=emulator_server.endpoint,
        credential=StaticToken(),
        connection_verify=emulator_server.ca_bundle,
    )
    logs = LogsQueryClient(
        StaticToken(), endpoint=emulator_server.endpoint, connection_verify=emulator_server.ca_bundle
    )
    for upload in range(6):
        ingestion.upload(DCR_ID, STREAM, [{"TimeGenerated": START.isoformat(), "Upload": upload}])
    lag_query = (
        f"{TABLE} | extend lag = datetime_diff('second', ingestion_time(), TimeGenerated)"
        " | project Upload, lag"
    )

    def visible() -> list[list[Any]]:
        result = logs.query_workspace(WORKSPACE_ID, lag_query, timespan=None)
        assert isinstance(result, LogsQueryResult)
        return [list(row) for row in result.tables[0].rows]

    assert visible() == []
    world.advance(29)
    assert visible() == []
    world.advance(271)
    rows = visible()
    assert sorted(upload for upload, _ in rows) == list(range(6))
    lags = [lag for _, lag in rows]
    assert all(30 <= lag <= 300 for lag in lags)
    assert len(set(lags)) > 1  # each upload lands after its own delay

    plain = logs.query_workspace(WORKSPACE_ID, f"{TABLE} | take 1", timespan=None)
    assert isinstance(plain, LogsQueryResult)
    assert plain.tables[0].columns == ["TenantId", "TimeGenerated", "Upload", "Type"]  # no hidden column
    assert len(world.backend(MonitorBackend).rows("law", TABLE)) == 6


# --- a write Azure performed whose answer was lost ----------------------------------------------
def test_a_lost_backup_answer_leaves_the_job_running_and_the_retry_meets_operation_in_progress(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(
        scenario(
            realism={"faults": [{"path": "/backup$", "method": "POST", "lose_answer": True, "count": 1}]}
        )
    )

    with pytest.raises(ServiceResponseError):  # azure-core does not retry a POST whose answer is lost
        trigger_backup(backup, "vm-pending")
    running = [job for job in world.estate.jobs.values() if job.status == "InProgress"]
    with pytest.raises(HttpResponseError) as repeat:
        trigger_backup(backup, "vm-pending")

    assert [job.vm.name for job in running] == ["vm-pending"]
    assert repeat.value.status_code == 400
    assert repeat.value.error is not None and repeat.value.error.code == "UserErrorBackupOperationInProgress"
    assert [entry.status for entry in world.requests.entries() if entry.method == "POST"] == [0, 400]


def test_a_lost_protect_answer_is_retried_by_the_client_and_the_repeat_is_accepted(
    world: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    world.load_scenario(
        scenario(
            realism={
                "faults": [
                    {"path": "/protectedItems/[^/]+$", "method": "PUT", "lose_answer": True, "count": 1}
                ]
            }
        )
    )

    headers = enable_protection(backup, "vm-new")  # azure-core retries a PUT: it is idempotent

    assert "Location" in headers
    assert [entry.status for entry in world.requests.entries() if entry.method == "PUT"] == [0, 202]
    configure_jobs = [job for job in world.estate.jobs.values() if job.vm.name == "vm-new"]
    assert len(configure_jobs) == 2  # the service acted on both requests
    world.advance(world.estate.timings.configure_operation_s)
    assert [job.status for job in configure_jobs] == ["Completed", "Completed"]
    assert backup.protected_items.get(**item_args("vm-new")).properties["protectionState"] == "IRPending"  # type: ignore[index]


# --- 429 storms and 5xx bursts ------------------------------------------------------------------
def test_a_429_storm_answers_n_requests_in_a_row_with_retry_after_then_ends(
    world: Emulator, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    world.load_scenario(
        scenario(
            realism={
                "faults": [
                    {"path": "/backupJobs$", "status": 429, "burst": 3, "count": 1, "retry_after_s": 7},
                    {"path": "/backupPolicies$", "status": 503, "burst": 2, "count": 1},
                ]
            }
        )
    )
    vault = (
        f"{emulator_server.endpoint}/subscriptions/{SUB}/resourceGroups/rg-backup"
        "/providers/Microsoft.RecoveryServices/vaults/rsv-weu"
    )

    jobs = [http.get(f"{vault}/backupJobs?api-version=2024-04-01") for _ in range(5)]
    policies = [http.get(f"{vault}/backupPolicies?api-version=2024-04-01") for _ in range(3)]

    assert [answer.status_code for answer in jobs] == [429, 429, 429, 200, 200]
    assert {answer.headers.get("Retry-After") for answer in jobs[:3]} == {"7"}
    assert jobs[0].json()["error"]["code"] == "TooManyRequests"
    assert [answer.status_code for answer in policies] == [503, 503, 200]


def test_a_storm_with_a_rate_starts_at_random_and_always_runs_its_length() -> None:
    storm = Fault.from_dict({"path": "/x", "status": 429, "rate": 0.1, "burst": 4})
    faults = Faults(seed=3)
    faults.set([storm])
    fired = [faults.pick("GET", "/x") is not None for _ in range(400)]

    runs = "".join("1" if hit else "0" for hit in fired).split("0")[:-1]  # the last may be cut short
    assert any(runs) and all(len(run) % 4 == 0 for run in runs if run)
    with pytest.raises(ValueError, match="burst"):
        Fault.from_dict({"path": "/x", "status": 429, "burst": 0})
    with pytest.raises(ValueError, match="unknown fault keys"):
        Fault.from_dict({"path": "/x", "status": 429, "bursts": 2})


# --- the unkind profile -------------------------------------------------------------------------
def test_the_unkind_profile_from_a_scenario_switches_every_knob_on_and_own_keys_win(world: Emulator) -> None:
    own = {"path": "/nothing-matches-this$", "status": 503}
    world.load_scenario(
        scenario(realism={"profile": "unkind", "faults": [own]}, resource_graph={"lag_s": 60})
    )

    recovery = world.backend(RecoveryServicesBackend)
    monitor = world.backend(MonitorBackend)
    assert world.lowercase_headers
    assert recovery.signed_operation_urls and recovery.unscaled_retry_after
    assert recovery.job_list_lag_s == 120
    assert world.backend(ResourceGraphBackend).lag_s == 60  # the scenario's own value
    assert (monitor.settings.ingestion_delay_s, monitor.settings.ingestion_delay_max_s) == (30, 300)
    assert monitor.workspaces  # the scenario's monitor section is kept beside the profile's keys
    assert [f.to_dict() for f in world.faults.list()] == [  # the scenario's own faults first
        Fault.from_dict(raw).to_dict() for raw in [own, *UNKIND["realism"]["faults"]]
    ]
    assert {f.status for f in world.faults.list()} >= {0, 429, 503}
    assert any(f.lose_answer for f in world.faults.list()) and any(f.burst > 1 for f in world.faults.list())

    world.reset()
    assert not world.lowercase_headers and not world.faults.list()
    assert not world.backend(RecoveryServicesBackend).signed_operation_urls


def test_an_unknown_profile_fails_the_load_naming_the_key(world: Emulator) -> None:
    with pytest.raises(ScenarioError, match=r"realism.profile: unknown realism profile 'cruel'"):
        world.load_scenario(scenario(realism={"profile": "cruel"}))


def test_the_unkind_profile_at_run_time_keeps_the_estate_and_the_faults_already_set(
    world: Emulator,
    http: requests.Session,
    emulator_server: EmulatorServer,
    backup: RecoveryServicesBackupClient,
) -> None:
    world.load_scenario(scenario())
    own = Fault(path_regex="/nothing-matches-this$", status=503)
    world.faults.add(own)

    answer = http.put(f"{emulator_server.endpoint}/_emulator/profile", json={"name": "unkind"})
    refused = http.put(f"{emulator_server.endpoint}/_emulator/profile", json={"name": "cruel"})

    assert answer.status_code == 204
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidProfile"
    assert world.faults.list()[0] is own and len(world.faults.list()) == 1 + len(UNKIND["realism"]["faults"])
    world.faults.set([own])  # keep this test's requests clear of the random storms
    headers = enable_protection(backup, "vm-new")
    assert "t" in parse_qs(urlsplit(headers["location"]).query)  # signed, and the names lower-case
    assert headers["retry-after"] == "60"
    assert world.backend(ResourceGraphBackend).lag_s == 180


def test_apply_profile_from_python_matches_the_scenario_key(world: Emulator) -> None:
    world.load_scenario(scenario(realism={"profile": "unkind"}))
    from_scenario = _knobs(world)
    world.load_scenario(scenario())
    assert _knobs(world) != from_scenario

    apply_profile(world, "unkind")

    assert _knobs(world) == from_scenario


def _knobs(emulator: Emulator) -> str:
    recovery = emulator.backend(RecoveryServicesBackend)
    monitor = emulator.backend(MonitorBackend).settings
    return json.dumps(
        {
            "lowercase_headers": emulator.lowercase_headers,
            "faults": [f.to_dict() for f in emulator.faults.list()],
            "recoveryservices": [
                recovery.signed_operation_urls,
                recovery.unscaled_retry_after,
                recovery.job_list_lag_s,
            ],
            "resource_graph": emulator.backend(ResourceGraphBackend).lag_s,
            "monitor": [monitor.ingestion_delay_s, monitor.ingestion_delay_max_s],
        }
    )


def test_a_reset_fault_drops_the_connection_without_any_answer(
    world: Emulator, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    world.load_scenario(scenario(realism={"faults": [{"path": "/backupPolicies$", "status": 0, "count": 1}]}))
    url = (
        f"{emulator_server.endpoint}/subscriptions/{SUB}/resourceGroups/rg-backup/providers"
        "/Microsoft.RecoveryServices/vaults/rsv-weu/backupPolicies?api-version=2024-04-01"
    )

    with pytest.raises(requests.ConnectionError):
        http.get(url)
    assert http.get(url).status_code == 200
