"""Resource Graph through the real ResourceGraphClient: real KQL, scope, paging, lag, quota, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpResponse
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from backupwarden.adapters.azure.discovery import STUCK_ITEMS_QUERY
from emulator import Emulator, EmulatorServer
from emulator.estate import BackupJob, BackupPolicy, ProtectedItem, Subscription, Vault, VirtualMachine
from emulator.recoveryservices.shapes import protected_item_id
from emulator.resourcegraph.models import ResourceGraphBackend

SUB_A = "aaaaaaaa-1111-4111-8111-111111111111"
SUB_B = "bbbbbbbb-2222-4222-8222-222222222222"
REGION = "westeurope"
ITEM_TYPE = "microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems"

# The sweep's question: IaaS VM items still pending their initial backup, minus those whose
# backup is already running. Two spellings of the same question.
PENDING_WITHOUT_RUNNING_BACKUP_LEFTANTI = """
recoveryservicesresources
| where type == 'microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems'
| where properties.backupManagementType == 'AzureIaasVM' and properties.protectionState == 'IRPending'
| extend vault = tolower(tostring(split(id, '/backupFabrics/')[0]))
| extend container = tostring(properties.containerName)
| join kind=leftanti (
    recoveryservicesresources
    | where type == 'microsoft.recoveryservices/vaults/backupjobs'
    | where properties.operation == 'Backup' and properties.status == 'InProgress'
    | project vault = tolower(tostring(split(id, '/backupJobs/')[0])),
        container = tostring(properties.containerName)
  ) on vault, container
| project id, vmId = tostring(properties.sourceResourceId), state = tostring(properties.protectionState)
| order by id asc
"""
PENDING_WITHOUT_RUNNING_BACKUP_LEFTOUTER = """
RecoveryServicesResources
| where type =~ 'Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems'
| where properties.backupManagementType == 'AzureIaasVM' and properties.protectionState == 'IRPending'
| extend vault = tolower(tostring(split(id, '/backupFabrics/')[0]))
| extend container = tostring(properties.containerName)
| join kind=leftouter (
    RecoveryServicesResources
    | where type =~ 'Microsoft.RecoveryServices/vaults/backupJobs'
    | where properties.operation == 'Backup' and properties.status == 'InProgress'
    | project vault = tolower(tostring(split(id, '/backupJobs/')[0])),
        container = tostring(properties.containerName), runningJob = name
  ) on vault, container
| where isempty(runningJob)
| project id, vmId = tostring(properties.sourceResourceId), state = tostring(properties.protectionState)
| order by id asc
"""
VMS_QUERY = (
    "resources | where type =~ 'Microsoft.Compute/virtualMachines' | project id, name | order by id asc"
)


# --- building the estate -----------------------------------------------------------------------
def add_vault(emulator: Emulator, subscription: str = SUB_A) -> tuple[Vault, BackupPolicy]:
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(subscription, f"sub {subscription[:4]}"))
        vault = emulator.estate.add_vault(
            Vault(subscription, "rg-backup", f"vault-{subscription[:4]}", REGION)
        )
        policy = emulator.estate.add_policy(BackupPolicy(vault.id, "DefaultPolicy"))
    return vault, policy


def add_vm(
    emulator: Emulator, name: str, subscription: str = SUB_A, tags: dict[str, str] | None = None
) -> VirtualMachine:
    with emulator.lock:
        return emulator.estate.add_vm(
            VirtualMachine(subscription, "rg-app", name, REGION, tags=dict(tags or {}))
        )


def protect(
    emulator: Emulator, vm: VirtualMachine, vault: Vault, policy: BackupPolicy, state: str
) -> ProtectedItem:
    with emulator.lock:
        item = ProtectedItem(vault.id, vm, policy.id, protection_state=state, configured_at=emulator.now())
        emulator.estate.protected_items[vm.id.lower()] = item
        return item


def add_job(emulator: Emulator, vault: Vault, vm: VirtualMachine, status: str, age: timedelta) -> BackupJob:
    with emulator.lock:
        started = emulator.now() - age
        ended = None if status == "InProgress" else started + timedelta(minutes=40)
        return emulator.estate.add_job(
            BackupJob(vault.id, vm, "Backup", started, status=status, end_time=ended)
        )


def item_id(vault: Vault, vm: VirtualMachine) -> str:
    return protected_item_id(vault, vm)


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def graph(sdk_kwargs: dict[str, Any]) -> ResourceGraphClient:
    return ResourceGraphClient(**sdk_kwargs)


@pytest.fixture
def backend(emulator: Emulator) -> ResourceGraphBackend:
    backend = emulator.backend(ResourceGraphBackend)
    backend.quota_per_5s = 1000  # most tests send more queries than the real quota allows
    return backend


@pytest.fixture
def frozen_clock(emulator: Emulator) -> Iterator[Emulator]:
    """The emulated clock stands still (moved only by `advance`); restored afterwards."""
    scale = emulator.clock.scale
    emulator.clock.set(emulator.now(), scale=0)
    yield emulator
    emulator.clock.set(emulator.now(), scale=scale)


def query(
    graph: ResourceGraphClient, text: str, subscriptions: list[str] | None = None, **options: Any
) -> Any:
    request = QueryRequest(
        subscriptions=subscriptions if subscriptions is not None else [SUB_A],
        query=text,
        options=QueryRequestOptions(**options) if options else None,
    )
    return graph.resources(request)


def raw_query(graph: ResourceGraphClient, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer's JSON and headers exactly as sent, still through the SDK client."""
    answer = graph.resources(
        QueryRequest.from_dict(body),
        cls=lambda response, _, headers: (
            response.http_response.json(),
            dict(response.http_response.headers),
        ),
    )
    return cast(tuple[dict[str, Any], dict[str, str]], answer)


def response_of(exc: HttpResponseError) -> HttpResponse:
    assert exc.response is not None
    return cast(HttpResponse, exc.response)


def error_of(exc: HttpResponseError) -> dict[str, Any]:
    error: dict[str, Any] = response_of(exc).json()["error"]
    return error


# --- the sweep's query ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kql", [PENDING_WITHOUT_RUNNING_BACKUP_LEFTANTI, PENDING_WITHOUT_RUNNING_BACKUP_LEFTOUTER]
)
def test_sweep_query_returns_pending_items_without_a_running_backup(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient, kql: str
) -> None:
    vault, policy = add_vault(emulator)
    pending = add_vm(emulator, "pending")
    running = add_vm(emulator, "pending-running")
    finished = add_vm(emulator, "pending-finished")
    protected = add_vm(emulator, "protected")
    failing = add_vm(emulator, "failing")
    for vm in (pending, running, finished):
        protect(emulator, vm, vault, policy, "IRPending")
    protect(emulator, protected, vault, policy, "Protected")
    protect(emulator, failing, vault, policy, "ProtectionError")
    add_job(emulator, vault, running, "InProgress", timedelta(minutes=5))
    add_job(emulator, vault, finished, "Failed", timedelta(hours=2))
    add_job(emulator, vault, protected, "InProgress", timedelta(minutes=1))
    other_vault, other_policy = add_vault(emulator, SUB_B)
    protect(emulator, add_vm(emulator, "elsewhere", SUB_B), other_vault, other_policy, "IRPending")

    answer = query(graph, kql)

    assert answer.total_records == 2
    assert answer.result_truncated == "false"
    assert answer.data == [
        {"id": item_id(vault, finished), "vmId": finished.id, "state": "IRPending"},
        {"id": item_id(vault, pending), "vmId": pending.id, "state": "IRPending"},
    ]


def test_the_sweeps_own_query_flags_running_backups_and_knows_configure_times(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vault, policy = add_vault(emulator)
    pending = add_vm(emulator, "pending", tags={"backup": "gold"})
    running = add_vm(emulator, "running")
    protect(emulator, pending, vault, policy, "IRPending")
    protect(emulator, running, vault, policy, "IRPending")
    protect(emulator, add_vm(emulator, "done"), vault, policy, "Protected")
    with emulator.lock:
        configured = emulator.now() - timedelta(hours=3)
        emulator.estate.add_job(
            BackupJob(
                vault.id,
                pending,
                "ConfigureBackup",
                configured - timedelta(seconds=35),
                "Completed",
                configured,
            )
        )
    add_job(emulator, vault, running, "InProgress", timedelta(minutes=5))

    rows = query(graph, STUCK_ITEMS_QUERY).data

    assert [(row["vmId"], row["runningBackups"]) for row in rows] == [
        (pending.id.lower(), 0),
        (running.id.lower(), 1),
    ]
    assert rows[0]["configuredAt"] == configured.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
    assert rows[0]["vmTags"] == {"backup": "gold"}
    assert rows[0]["itemName"] == "VM;iaasvmcontainerv2;rg-app;pending"
    assert rows[0]["vaultId"] == vault.id.lower()


def test_protected_item_rows_carry_the_backup_service_properties_and_arg_ones(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vault, policy = add_vault(emulator)
    vm = add_vm(emulator, "vm1")
    protect(emulator, vm, vault, policy, "IRPending")
    broken = add_vm(emulator, "vm2")
    protect(emulator, broken, vault, policy, "ProtectionError")

    rows = query(graph, "recoveryservicesresources | order by name asc").data

    assert [row["type"] for row in rows] == [ITEM_TYPE, ITEM_TYPE]
    first = rows[0]
    assert first["id"] == item_id(vault, vm)
    assert first["name"] == "VM;iaasvmcontainerv2;rg-app;vm1"
    assert (first["subscriptionId"], first["resourceGroup"]) == (SUB_A, "rg-backup")
    assert first["properties"]["protectionState"] == "IRPending"
    assert first["properties"]["lastBackupStatus"] == ""
    assert first["properties"]["lastBackupTime"] == "2001-01-01T00:00:00Z"
    assert first["properties"]["currentProtectionState"] == "ProtectionConfigured"
    assert first["properties"]["dataSourceInfo"]["resourceID"] == vm.id
    assert rows[1]["properties"]["currentProtectionState"] == "ProtectionError"


def test_jobs_older_than_fourteen_days_are_not_in_the_graph(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vault, _ = add_vault(emulator)
    vm = add_vm(emulator, "vm1")
    recent = add_job(emulator, vault, vm, "Completed", timedelta(days=13))
    add_job(emulator, vault, vm, "Completed", timedelta(days=15))

    rows = query(
        graph, "recoveryservicesresources | where type == 'microsoft.recoveryservices/vaults/backupjobs'"
    ).data

    assert [row["name"] for row in rows] == [recent.job_id]
    assert rows[0]["properties"]["status"] == "Completed"
    assert rows[0]["properties"]["entityFriendlyName"] == "vm1"


# --- resources, projections, formats --------------------------------------------------------------
def test_vms_with_a_tag_come_back_with_their_tags_and_properties(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    prod = add_vm(emulator, "web1", tags={"env": "prod", "owner": "team-a"})
    add_vm(emulator, "dev1", tags={"env": "dev"})
    add_vm(emulator, "untagged")
    add_vault(emulator)

    answer = query(
        graph,
        "resources | where type == 'microsoft.compute/virtualmachines' and tags.env == 'prod'"
        " | project id, name, type, location, tags, vmId = tostring(properties.vmId)",
    )

    assert answer.data == [
        {
            "id": prod.id,
            "name": "web1",
            "type": "microsoft.compute/virtualmachines",
            "location": REGION,
            "tags": {"env": "prod", "owner": "team-a"},
            "vmId": prod.vm_id,
        }
    ]


def test_projection_and_order_by_give_exactly_those_columns_in_that_order(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    names = ["b-vm", "c-vm", "a-vm"]
    for name in names:
        add_vm(emulator, name)

    rows = query(graph, "resources | project id, name, location | order by id desc").data

    assert [list(row) for row in rows] == [["id", "name", "location"]] * 3
    assert [row["name"] for row in rows] == sorted(names, reverse=True)


def test_table_format_gives_typed_columns_and_rows(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    add_vm(emulator, "vm1", tags={"env": "prod"})

    answer = query(
        graph,
        "resources | project name, tags, n = 1, when = now(), ok = true | order by name asc",
        result_format="table",
    )

    assert answer.data["columns"] == [
        {"name": "name", "type": "string"},
        {"name": "tags", "type": "object"},
        {"name": "n", "type": "integer"},
        {"name": "when", "type": "datetime"},
        {"name": "ok", "type": "boolean"},
    ]
    [row] = answer.data["rows"]
    assert row[:3] == ["vm1", {"env": "prod"}, 1]
    assert row[3].endswith("Z") and row[4] is True


def test_facets_count_the_result_by_column(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    for name, group in [("a", "rg-1"), ("b", "rg-1"), ("c", "rg-2")]:
        with emulator.lock:
            emulator.estate.add_vm(VirtualMachine(SUB_A, group, name, REGION))

    body, _ = raw_query(
        graph,
        {
            "subscriptions": [SUB_A],
            "query": "resources | project id, resourceGroup, properties.storageProfile.osDisk.osType",
            "facets": [
                {"expression": "resourceGroup", "options": {"sortOrder": "desc"}},
                {"expression": "properties.storageProfile.osDisk.osType", "options": {"$top": 1}},
                {"expression": "resourceGroup", "options": {"filter": "resourceGroup == 'rg-2'"}},
                {"expression": "nonExistingColumn"},
            ],
        },
    )

    assert [facet["resultType"] for facet in body["facets"]] == ["FacetResult"] * 3 + ["FacetError"]
    assert body["facets"][0]["data"] == [
        {"resourceGroup": "rg-1", "count": 2},
        {"resourceGroup": "rg-2", "count": 1},
    ]
    assert body["facets"][1]["data"] == [{"properties_storageProfile_osDisk_osType": "Linux", "count": 3}]
    assert body["facets"][2]["data"] == [{"resourceGroup": "rg-2", "count": 1}]
    assert body["facets"][3]["errors"][1]["code"] == "InvalidColumnNames"


def test_table_names_ignore_case_as_in_arg(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    add_vm(emulator, "vm1")

    answer = query(
        graph, "Resources | join kind=inner (RESOURCES | project id, twin = name) on id | project name, twin"
    )

    assert answer.data == [{"name": "vm1", "twin": "vm1"}]


# --- paging -------------------------------------------------------------------------------------
def test_skip_tokens_walk_every_row_once_across_pages(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vms = [add_vm(emulator, f"vm{i:02d}") for i in range(25)]
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        answer = (
            query(graph, VMS_QUERY, top=10, skip_token=token) if token else query(graph, VMS_QUERY, top=10)
        )
        assert answer.total_records == 25
        assert answer.result_truncated == "false"
        pages.append([row["id"] for row in answer.data])
        token = answer.skip_token
        if token is None:
            break

    assert [len(page) for page in pages] == [10, 10, 5]
    assert [row_id for page in pages for row_id in page] == sorted(vm.id for vm in vms)


def test_pages_without_order_by_come_in_id_order(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vms = [add_vm(emulator, name) for name in ("m", "z", "a", "q", "c")]

    first = query(graph, "resources | project id", top=3)
    second = query(graph, "resources | project id", top=3, skip_token=first.skip_token)

    assert [row["id"] for row in first.data + second.data] == sorted(vm.id for vm in vms)


def test_without_top_a_page_holds_100_rows(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    for i in range(120):
        add_vm(emulator, f"vm{i:03d}")

    answer = query(graph, VMS_QUERY)

    assert (answer.count, answer.total_records) == (100, 120)
    assert answer.skip_token


def test_skip_option_starts_further_in(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vms = sorted((add_vm(emulator, f"vm{i}") for i in range(6)), key=lambda vm: vm.id)

    answer = query(graph, VMS_QUERY, top=2, skip=3)

    assert [row["id"] for row in answer.data] == [vms[3].id, vms[4].id]
    assert answer.skip_token


def test_a_result_without_id_is_truncated_without_a_token(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    for i in range(12):
        add_vm(emulator, f"vm{i:02d}")

    answer = query(graph, "resources | project name | order by name asc", top=5)

    assert (answer.count, answer.total_records, answer.result_truncated) == (5, 12, "true")
    assert answer.skip_token is None


def test_a_token_is_refused_for_another_query(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    for i in range(3):
        add_vm(emulator, f"vm{i}")
    token = query(graph, VMS_QUERY, top=1).skip_token

    with pytest.raises(HttpResponseError) as raised:
        query(graph, "resources | project id", top=1, skip_token=token)

    assert raised.value.status_code == 400
    assert error_of(raised.value)["code"] == "BadRequest"


# --- scope ---------------------------------------------------------------------------------------
def test_only_rows_of_the_requested_subscriptions_are_seen(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    in_a = add_vm(emulator, "vm-a", SUB_A)
    in_b = add_vm(emulator, "vm-b", SUB_B)

    only_a = query(graph, VMS_QUERY, [SUB_A.upper()]).data
    both = query(graph, VMS_QUERY, [SUB_A, SUB_B]).data
    tenant = raw_query(graph, {"query": VMS_QUERY})[0]["data"]

    assert [row["id"] for row in only_a] == [in_a.id]
    assert sorted(row["id"] for row in both) == sorted([in_a.id, in_b.id])
    assert sorted(row["id"] for row in tenant) == sorted([in_a.id, in_b.id])


def test_management_groups_resolve_to_their_subscriptions(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    in_a = add_vm(emulator, "vm-a", SUB_A)
    add_vm(emulator, "vm-b", SUB_B)
    backend.configure({"management_groups": {"Production": [SUB_A]}})

    body, _ = raw_query(graph, {"managementGroups": ["production"], "query": VMS_QUERY})

    assert [row["id"] for row in body["data"]] == [in_a.id]
    with pytest.raises(HttpResponseError) as raised:
        raw_query(graph, {"managementGroups": ["nobody-knows"], "query": VMS_QUERY})
    assert raised.value.status_code == 403


# --- staleness ------------------------------------------------------------------------------------
def test_with_a_lag_the_graph_shows_the_old_state_until_the_lag_has_passed(
    frozen_clock: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    emulator = frozen_clock
    backend.configure({"lag_s": 60})
    vault, policy = add_vault(emulator)
    item = protect(emulator, add_vm(emulator, "vm1"), vault, policy, "IRPending")
    state_query = "recoveryservicesresources | project state = tostring(properties.protectionState)"
    assert query(graph, state_query).data == [{"state": "IRPending"}]

    with emulator.lock:
        item.protection_state = "Protected"
    seen_at_once = query(graph, state_query).data
    emulator.advance(59)
    seen_before_lag = query(graph, state_query).data
    emulator.advance(2)
    seen_after_lag = query(graph, state_query).data

    assert seen_at_once == seen_before_lag == [{"state": "IRPending"}]
    assert seen_after_lag == [{"state": "Protected"}]


def test_without_a_lag_changes_show_at_once(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    vault, policy = add_vault(emulator)
    vm = add_vm(emulator, "vm1")
    assert query(graph, "recoveryservicesresources | count").data == [{"Count": 0}]

    item = protect(emulator, vm, vault, policy, "IRPending")
    assert query(
        graph, "recoveryservicesresources | project s = tostring(properties.protectionState)"
    ).data == [{"s": "IRPending"}]
    with emulator.lock:
        item.protection_state = "Protected"
        vm.tags["env"] = "prod"
        del emulator.estate.vms[vm.id.lower()]

    assert query(
        graph, "recoveryservicesresources | project s = tostring(properties.protectionState)"
    ).data == [{"s": "Protected"}]
    assert query(graph, "resources | where type =~ 'microsoft.compute/virtualmachines' | count").data == [
        {"Count": 0}
    ]


# --- quota ---------------------------------------------------------------------------------------
def test_quota_headers_count_down_and_the_next_query_is_throttled(
    frozen_clock: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    emulator = frozen_clock
    emulator.backend(ResourceGraphBackend).configure({"quota_per_5s": 3})
    graph = ResourceGraphClient(**sdk_kwargs, retry_total=0)
    add_vm(emulator, "vm1")

    remaining = [raw_query(graph, {"subscriptions": [SUB_A], "query": VMS_QUERY})[1] for _ in range(3)]
    with pytest.raises(HttpResponseError) as raised:
        raw_query(graph, {"subscriptions": [SUB_A], "query": VMS_QUERY})
    emulator.advance(5)
    after_reset = raw_query(graph, {"subscriptions": [SUB_A], "query": VMS_QUERY})[1]

    assert [h["x-ms-user-quota-remaining"] for h in remaining] == ["2", "1", "0"]
    assert all(h["x-ms-user-quota-resets-after"].count(":") == 2 for h in remaining)
    throttled = raised.value
    assert throttled.status_code == 429
    throttled_headers = response_of(throttled).headers
    assert int(throttled_headers["Retry-After"]) >= 1
    assert throttled_headers["x-ms-user-quota-remaining"] == "0"
    assert "x-ms-user-quota-resets-after" in throttled_headers
    assert error_of(throttled)["code"] == "RateLimiting"
    assert error_of(throttled)["details"][0]["code"] == "RateLimiting"
    assert after_reset["x-ms-user-quota-remaining"] == "2"


def test_quota_not_enforced_never_throttles(frozen_clock: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    frozen_clock.backend(ResourceGraphBackend).configure({"quota_per_5s": 1, "quota_enforced": False})
    graph = ResourceGraphClient(**sdk_kwargs, retry_total=0)

    headers = [raw_query(graph, {"subscriptions": [SUB_A], "query": VMS_QUERY})[1] for _ in range(3)]

    assert [h["x-ms-user-quota-remaining"] for h in headers] == ["0", "0", "0"]


# --- errors ---------------------------------------------------------------------------------------
def test_a_syntax_error_is_400_with_args_parser_failure_details(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    with pytest.raises(HttpResponseError) as raised:
        query(graph, "resources | wherex")

    assert raised.value.status_code == 400
    error = error_of(raised.value)
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Please provide below info when asking for support: timestamp = ")
    assert error["details"][0]["code"] == "InvalidQuery"
    failure = error["details"][1]
    assert failure["code"] == "ParserFailure"
    assert (failure["line"], failure["characterPositionInLine"], failure["token"]) == (1, 10, "|")
    assert "x-ms-user-quota-remaining" in response_of(raised.value).headers


def test_an_unknown_column_is_400_naming_it(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    add_vm(emulator, "vm1")

    with pytest.raises(HttpResponseError) as raised:
        query(graph, "resources | where nonExistingColumn == 1")

    details = error_of(raised.value)["details"]
    assert raised.value.status_code == 400
    assert details[0]["code"] == "InvalidQuery"
    assert "'nonExistingColumn'" in details[1]["message"]


def test_an_unknown_table_is_400(
    emulator: Emulator, backend: ResourceGraphBackend, graph: ResourceGraphClient
) -> None:
    with pytest.raises(HttpResponseError) as raised:
        query(graph, "nosuchtable | take 1")

    assert raised.value.status_code == 400
    assert "'nosuchtable'" in error_of(raised.value)["details"][1]["message"]


@pytest.mark.parametrize(
    "options",
    [{"$top": 5000}, {"$top": 0}, {"$skip": -1}, {"resultFormat": "csv"}, {"$skipToken": "not-a-token"}],
)
def test_bad_query_options_are_400(
    emulator_server: EmulatorServer,
    emulator: Emulator,
    backend: ResourceGraphBackend,
    options: dict[str, Any],
) -> None:
    answer = requests.post(
        f"{emulator_server.endpoint}/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01",
        json={"subscriptions": [SUB_A], "query": "resources", "options": options},
        headers={"Authorization": "Bearer test"},
        verify=emulator_server.ca_bundle,
        timeout=30,
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadRequest"


def test_a_body_without_query_is_400(emulator_server: EmulatorServer, emulator: Emulator) -> None:
    answer = requests.post(
        f"{emulator_server.endpoint}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01",
        json={"subscriptions": [SUB_A]},
        headers={"Authorization": "Bearer test"},
        verify=emulator_server.ca_bundle,
        timeout=30,
    )

    assert answer.status_code == 400


def test_configure_refuses_unknown_settings(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="lagg_s"):
        emulator.backend(ResourceGraphBackend).configure({"lagg_s": 5})


def test_a_scenario_section_configures_the_backend(emulator: Emulator) -> None:
    emulator.load_scenario({"resource_graph": {"lag_s": 30, "quota_per_5s": 50}})

    backend = emulator.backend(ResourceGraphBackend)
    assert (backend.lag_s, backend.quota_per_5s) == (30, 50)
