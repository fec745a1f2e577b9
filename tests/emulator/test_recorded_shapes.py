"""The emulator's answers diffed against real Azure's recorded answers.

`tests/recordings/shapes/` holds trimmed response bodies of real exchanges (Azure CLI backup
recordings, Cloud Custodian cassettes, Azure SDK monitor recordings; provenance in each file and in
`tests/recordings/README.md`). One emulated estate walks the path those recordings walked (vault
and policy reads, container refresh, enable protection, backup now, the job running and finished,
job lists, backupStatus, VM reads, Resource Graph, Logs Ingestion, Log Analytics); each question
goes to the emulator over HTTPS, and every key path of the recorded JSON must be in the emulator's
JSON with the same JSON type. Values that differ by nature (ids, names, times, etags) are not
compared; the value conventions the recordings show (placeholders, empty strings, keys absent while
a job runs) are asserted one by one.

The diff is hand-written: JSON Schema tools would need a schema inferred per answer and stop at the
first error, where a failure here should list every recorded path the emulator lacks, at once.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from emulator import Emulator, EmulatorServer
from emulator.estate import VirtualMachine
from emulator.monitor.models import MonitorBackend
from tests.emulator.recoveryservices_estate import (
    OTHER_SUB,
    REGION,
    START,
    SUB,
    VM_RG,
    World,
    build_world,
    frozen_clock,
    last_segment,
)

RECORDINGS = Path(__file__).resolve().parents[1] / "recordings" / "shapes"
BACKUP_API = "2023-04-01"  # what the Azure CLI recordings used
IAAS_ITEMS = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"
ARM_HOST = "https://management.azure.com"
NOT_REACHED = "0001-01-01T00:00:00"  # .NET's DateTime.MinValue: a time not reached yet, as recorded
# Maps whose keys are the customer's own data: only their type is compared.
FREE_FORM = frozenset({"tags"})


# --- the recordings -----------------------------------------------------------------------------
def recorded(source: str, name: str) -> dict[str, Any]:
    """One trimmed interaction: status, the headers kept, the body (None when empty)."""
    document = json.loads((RECORDINGS / f"{source}.json").read_text(encoding="utf-8"))
    return dict(document["interactions"][name])


# --- the diff -----------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_differences(expected: Any, actual: Any, allowed: Mapping[str, str] | None = None) -> list[str]:
    """Every key path of `expected` that `actual` lacks or holds with another JSON type.

    A recorded null fixes no type; the keys of free-form maps (tags) are not compared. A list as
    long as the recorded one is compared element by element; otherwise each element is compared
    with the recorded element it resembles most. `allowed` names paths left out of the comparison
    (`[]` stands for any list index).
    """
    return _differences(expected, actual, "$", "$", allowed or {})


def _differences(
    expected: Any, actual: Any, where: str, pattern: str, allowed: Mapping[str, str]
) -> list[str]:
    if pattern in allowed or expected is None:
        return []
    if _kind(expected) != _kind(actual):
        return [f"{where}: recorded {_kind(expected)}, emulator {_kind(actual)}"]
    problems: list[str] = []
    if isinstance(expected, dict) and pattern.rsplit(".", 1)[-1] not in FREE_FORM:
        for key, value in expected.items():
            if f"{pattern}.{key}" in allowed:
                continue
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
                continue
            problems.extend(_differences(value, actual[key], f"{where}.{key}", f"{pattern}.{key}", allowed))
    elif isinstance(expected, list) and expected:
        if not actual:
            return [f"{where}: recorded a non-empty list, emulator an empty one"]
        for index, element in enumerate(actual):
            shapes = [expected[index]] if len(actual) == len(expected) else expected
            candidates: list[list[str]] = [
                _differences(shape, element, f"{where}[{index}]", f"{pattern}[]", allowed) for shape in shapes
            ]
            problems.extend(sorted(candidates, key=len)[0])
    return problems


def assert_recorded_shape(expected: Any, actual: Any, allowed: Mapping[str, str] | None = None) -> None:
    problems = shape_differences(expected, actual, allowed)
    assert not problems, "the emulator's answer lacks what Azure answered:\n" + "\n".join(problems)


def test_the_diff_lists_every_missing_key_and_type_mismatch_with_its_path() -> None:
    expected = {
        "id": "x",
        "tags": {"owner": "someone"},
        "properties": {
            "lastBackupStatus": "",
            "extendedInfo": {"tasksList": [{"taskId": "a", "endTime": "b"}]},
        },
        "count": 0,
        "vaultId": None,
    }
    actual = {
        "id": 3,
        "tags": {},
        "properties": {"extendedInfo": {"tasksList": [{"taskId": "a"}, {"taskId": "b", "endTime": "c"}]}},
        "count": 1.5,
        "vaultId": {"any": "type"},
    }

    assert shape_differences(expected, actual) == [
        "$.id: recorded string, emulator number",
        "$.properties.lastBackupStatus: missing",
        "$.properties.extendedInfo.tasksList[0].endTime: missing",
    ]
    assert shape_differences(expected, actual, {"$.properties.extendedInfo.tasksList[].endTime": "why"}) == [
        "$.id: recorded string, emulator number",
        "$.properties.lastBackupStatus: missing",
    ]
    assert shape_differences({"rows": [1]}, {"rows": []}) == [
        "$.rows: recorded a non-empty list, emulator an empty one"
    ]
    assert shape_differences({"jobs": [{"a": 1}, {"b": 1}]}, {"jobs": [{"b": 1}, {"a": 1}]}) == [
        "$.jobs[0].a: missing",
        "$.jobs[1].b: missing",
    ]


# --- asking the emulator ------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as requests keeps them
    body: Any  # parsed JSON; None when the answer has no body
    text: str


class Http:
    """Plain HTTPS calls, so that the emulator's JSON is seen as it is sent (no SDK model in between)."""

    def __init__(self, server: EmulatorServer) -> None:
        self.endpoint = server.endpoint.rstrip("/")
        self.session = requests.Session()
        self.session.verify = server.ca_bundle
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
        self.session.headers["Authorization"] = "Bearer emulator-token"

    def call(
        self,
        method: str,
        path: str,
        api_version: str | None = BACKUP_API,
        odata_filter: str | None = None,
        body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        url = path if path.startswith("https://") else self.endpoint + path
        params = {"api-version": api_version} if api_version else {}
        if odata_filter is not None:
            params["$filter"] = odata_filter
        response = self.session.request(
            method, url, params=params, json=body, data=data, headers=dict(headers or {}), timeout=10
        )
        return Answer(
            response.status_code,
            response.headers,
            response.json() if response.content else None,
            response.text,
        )

    def follow(self, url: str) -> Answer:
        """GET an absolute Location URL as the service gave it (it carries its own api-version)."""
        return self.call("GET", url, api_version=None)


def _item_path(world: World, vm: VirtualMachine) -> str:
    # what `az backup protection enable-for-vm` sends: the service's names, `;` URL-encoded
    container = f"IaasVMContainer;iaasvmcontainerv2;{vm.resource_group.lower()};{vm.name.lower()}"
    return (
        f"{world.vault.id}/backupFabrics/Azure/protectionContainers/{quote(container, safe='')}"
        f"/protectedItems/{quote(vm.item_name, safe='')}"
    )


APP_REQUESTS = [
    {"name": "TimeGenerated", "type": "datetime"},
    {"name": "DurationMs", "type": "real"},
    {"name": "_ResourceId", "type": "string"},
]
RULE = "dcr-00000000000000000000000000000000"
TEST_STREAM = [
    {"name": "Time", "type": "datetime"},
    {"name": "Computer", "type": "string"},
    {"name": "AdditionalContext", "type": "dynamic"},
]


@pytest.fixture(scope="module")
def answers(emulator_server: EmulatorServer) -> Iterator[dict[str, Answer]]:
    """The recorded questions asked of one emulated estate, in the order the recordings asked them."""
    emulator: Emulator = emulator_server.emulator
    emulator.reset()
    http = Http(emulator_server)
    got: dict[str, Answer] = {}
    with frozen_clock(emulator):
        world = build_world(emulator, vm_count=2)
        with emulator.lock:
            for created in world.vms:
                created.created = START - timedelta(days=1)  # every real VM has its creation time
            # in a subscription of its own, so that the recorded (Linux) VM list meets Linux VMs only
            windows = VirtualMachine(OTHER_SUB, VM_RG, "vm-win", REGION, created=START, os_type="Windows")
            emulator.estate.add_vm(windows)
        timings = emulator.estate.timings
        vm, vault = world.vms[0], world.vault.id
        _ask_vault_and_policies(http, world, got)

        got["refresh_containers"] = http.call("POST", f"{vault}/backupFabrics/Azure/refreshContainers")
        got["refresh_result_running"] = http.follow(got["refresh_containers"].headers["Location"])
        emulator.advance(timings.refresh_containers_s)
        got["refresh_result_done"] = http.follow(got["refresh_containers"].headers["Location"])
        got["protectable_items"] = http.call(
            "GET", f"{vault}/backupProtectableItems", odata_filter="backupManagementType eq 'AzureIaasVM'"
        )

        protect = {
            "properties": {
                "protectedItemType": "Microsoft.Compute/virtualMachines",
                "sourceResourceId": vm.id,
                "policyId": world.policy.id,
            }
        }
        got["protect_put"] = http.call("PUT", _item_path(world, vm), body=protect)
        operation = f"{vault}/backupOperations/{last_segment(got['protect_put'].headers['Location'])}"
        got["protect_operation_running"] = http.call("GET", operation)
        emulator.advance(timings.configure_operation_s)
        got["protect_operation_done"] = http.call("GET", operation)
        configure_job = got["protect_operation_done"].body["properties"]["jobId"]
        got["configure_job_completed"] = http.call("GET", f"{vault}/backupJobs/{configure_job}")
        got["items_irpending"] = http.call("GET", f"{vault}/backupProtectedItems", odata_filter=IAAS_ITEMS)
        got["item_irpending"] = http.call("GET", _item_path(world, vm))

        backup = {"properties": {"objectType": "IaasVMBackupRequest"}}
        got["backup_post"] = http.call("POST", _item_path(world, vm) + "/backup", body=backup)
        emulator.advance(timings.backup_operation_s)
        operation = f"{vault}/backupOperations/{last_segment(got['backup_post'].headers['Location'])}"
        got["backup_operation"] = http.call("GET", operation)
        backup_job = f"{vault}/backupJobs/{got['backup_operation'].body['properties']['jobId']}"
        emulator.advance(4)  # the recording read the job 4 s after the backup request
        got["backup_job_running"] = http.call("GET", backup_job)
        got["job_list_in_progress"] = http.call(
            "GET", f"{vault}/backupJobs", odata_filter="status eq 'InProgress'"
        )
        emulator.advance(timings.backup_job_s)
        got["backup_job_completed"] = http.call("GET", backup_job)
        got["job_list"] = http.call("GET", f"{vault}/backupJobs")
        got["items_protected"] = http.call("GET", f"{vault}/backupProtectedItems", odata_filter=IAAS_ITEMS)
        got["item_protected"] = http.call("GET", _item_path(world, vm))

        _ask_backup_status(http, world, got)
        got["vm_get"] = http.call("GET", windows.id, api_version="2023-09-01")
        got["vm_list"] = http.call(
            "GET",
            f"/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines",
            api_version="2024-11-01",
        )
        got["resource_graph_table"] = http.call(
            "POST",
            "/providers/Microsoft.ResourceGraph/resources",
            api_version="2019-04-01",
            # c7n masks request bodies: the question is the one its ARG source asks for VMs, in the
            # table format the recorded answer has.
            body={
                "subscriptions": [SUB],
                "query": "Resources | where type =~ 'Microsoft.Compute/virtualMachines'",
                "options": {"resultFormat": "table"},
            },
        )
        _ask_monitor(emulator, http, got)
    yield got


def _ask_vault_and_policies(http: Http, world: World, got: dict[str, Answer]) -> None:
    vault = world.vault.id
    got["vault_get"] = http.call("GET", vault)
    # The recording asked with api-version 2023-01-01, which the emulator's vault routes do not list.
    got["vault_list"] = http.call("GET", f"/subscriptions/{SUB}/providers/Microsoft.RecoveryServices/vaults")
    got["policy_get"] = http.call("GET", f"{vault}/backupPolicies/{world.policy.name}")
    got["policy_list"] = http.call("GET", f"{vault}/backupPolicies")


def _ask_backup_status(http: Http, world: World, got: dict[str, Answer]) -> None:
    # c7n's request, path spelled `/Subscriptions/` as recorded; its masked body is the documented one
    status = f"/Subscriptions/{SUB}/providers/Microsoft.RecoveryServices/locations/{REGION}/backupStatus"
    for name, vm in (
        ("backup_status_protected", world.vms[0]),
        ("backup_status_not_protected", world.vms[1]),
    ):
        got[name] = http.call("POST", status, body={"resourceType": "VM", "resourceId": vm.id})


def _ask_monitor(emulator: Emulator, http: Http, got: dict[str, Answer]) -> None:
    monitor = emulator.backend(MonitorBackend)
    monitor.configure(
        {
            "workspaces": [{"name": "law"}],
            "dcrs": [
                {
                    "name": "dcr",
                    "immutable_id": RULE,
                    "streams": {
                        "test-stream": {"columns": TEST_STREAM, "output_table": "TestStream_CL"},
                        "Custom-AppRequests": {"columns": APP_REQUESTS, "output_table": "AppRequests"},
                    },
                }
            ],
        }
    )
    workspace = monitor.workspace("law").customer_id
    upload = f"/dataCollectionRules/{RULE}/streams/"
    records = [
        {
            "Time": "2021-12-08T23:51:14.1104269Z",
            "Computer": "Computer1",
            "AdditionalContext": {"testContextKey": 3},
        }
    ]
    got["ingestion_upload"] = _upload(http, upload + "test-stream", records)
    got["ingestion_unknown_rule"] = _upload(
        http, "/dataCollectionRules/bad-rule/streams/test-stream", [{"foo": "bar"}]
    )
    request = {"TimeGenerated": (emulator.now() - timedelta(hours=1)).isoformat(), "DurationMs": 12.5}
    _upload(http, upload + "Custom-AppRequests", [{**request, "_ResourceId": "/subscriptions/x/vm"}])
    emulator.advance(monitor.settings.ingestion_delay_s + 1)
    query = recorded("monitor", "query_table")["request_body"]["query"]
    got["query_table"] = http.call("POST", f"/v1/workspaces/{workspace}/query", None, body={"query": query})
    query = recorded("monitor", "query_semantic_error")["request_body"]["query"]
    got["query_semantic_error"] = http.call(
        "POST", f"/v1/workspaces/{workspace}/query", None, body={"query": query}
    )


def _upload(http: Http, path: str, records: list[dict[str, Any]]) -> Answer:
    return http.call(
        "POST",
        path,
        api_version="2023-01-01",
        data=gzip.compress(json.dumps(records).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


# --- every recorded answer, diffed --------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """The emulator's answer `answer` compared with the recorded interaction `source`/`recorded_as`."""

    answer: str
    source: str
    # recorded paths (or headers) not compared, each with the reason the difference is accepted
    allowed: Mapping[str, str] | None = None
    # the recorded interaction, when it is not named like the answer: then the first element of its list
    recorded_as: str | None = None


CLI, C7N, MONITOR = "azure-cli-backup", "c7n-azure", "monitor"
# The differences accepted, each with its reason.
VM_ESTATE = {
    "properties.storageProfile.dataDisks": (
        "the estate models no data disks (the recorded VM has one); backupwarden never reads them"
    ),
    "properties.diagnosticsProfile.bootDiagnostics.storageUri": (
        "the emulated VMs use managed boot diagnostics, which has no storage account URI"
    ),
    "resources": "the recorded VM has an extension; a VM without extensions has no `resources` (vm_get)",
    "etag": "sent by newer compute api-versions only (not in vm_get, 2023-09-01); nothing reads it",
}


def _vm_allowances(prefix: str) -> dict[str, str]:
    return {f"{prefix}.{path}": reason for path, reason in VM_ESTATE.items()}


REFRESH_ASYNC_HEADER = {
    "azure-asyncoperation": (
        "the recorded header points to operationsStatus at api-version 2019-05-13-preview, which the "
        "emulator does not serve; refreshContainers is followed by its Location (azure-facts §3)"
    )
}


def _cases(source: str, *answers: str) -> list[Case]:
    return [Case(answer, source) for answer in answers]


CASES = [
    *_cases(CLI, "vault_get", "policy_get", "policy_list", "protectable_items"),
    Case("refresh_containers", CLI, REFRESH_ASYNC_HEADER),
    *_cases(CLI, "refresh_result_running", "refresh_result_done", "protect_put"),
    *_cases(CLI, "protect_operation_running", "protect_operation_done", "configure_job_completed"),
    *_cases(CLI, "items_irpending", "backup_post", "backup_operation", "backup_job_running"),
    *_cases(CLI, "job_list_in_progress", "backup_job_completed", "job_list", "items_protected", "vm_get"),
    # No recording reads one item; the service renders the same ProtectedItemResource as in lists.
    Case("item_irpending", CLI, recorded_as="items_irpending"),
    Case("item_protected", CLI, recorded_as="items_protected"),
    *_cases(C7N, "vault_list", "backup_status_protected", "backup_status_not_protected"),
    Case("vm_list", C7N, _vm_allowances("$.value[]")),
    Case("resource_graph_table", C7N, _vm_allowances("$.data.rows[]")),
    *_cases(MONITOR, "ingestion_upload", "ingestion_unknown_rule", "query_table", "query_semantic_error"),
]
# Headers whose presence the recordings show and the project's code reads.
READ_HEADERS = ("location", "azure-asyncoperation", "x-ms-error-code")


def _comparable(case: Case, body: Any) -> Any:
    """A table answer with each row as an object keyed by its column, so that cells are compared by name."""
    if case.answer != "resource_graph_table" or not isinstance(body, dict):
        return body
    table = body.get("data", {})
    names = [column["name"] for column in table.get("columns", [])]
    rows = [dict(zip(names, row, strict=True)) for row in table.get("rows", [])]
    return {**body, "data": {**table, "rows": rows}}


@pytest.mark.parametrize("case", CASES, ids=[case.answer for case in CASES])
def test_the_emulator_answers_in_the_recorded_shape(answers: dict[str, Answer], case: Case) -> None:
    interaction = recorded(case.source, case.recorded_as or case.answer)
    answer = answers[case.answer]
    expected = interaction["body"]
    if case.recorded_as:
        expected = expected["value"][0]

    assert answer.status == interaction["status"], answer.text
    missing = [
        name
        for name in interaction["headers"]
        if name in READ_HEADERS and name not in answer.headers and name not in (case.allowed or {})
    ]
    assert not missing, f"headers the service sent and the emulator did not: {missing}"
    if expected is None:
        assert answer.text == ""
    else:
        assert_recorded_shape(_comparable(case, expected), _comparable(case, answer.body), case.allowed)


# --- the value conventions the recordings show --------------------------------------------------
def _properties(answer: Answer) -> dict[str, Any]:
    """The properties of a resource, or of the first resource of a list."""
    body = answer.body
    resource = body["value"][0] if "value" in body else body
    return dict(resource["properties"])


def _recorded_properties(source: str, name: str) -> dict[str, Any]:
    body = recorded(source, name)["body"]
    resource = body["value"][0] if "value" in body else body
    return dict(resource["properties"])


def test_an_item_pending_its_first_backup_reads_as_recorded(answers: dict[str, Answer]) -> None:
    expected = _recorded_properties(CLI, "items_irpending")
    for answer in (answers["items_irpending"], answers["item_irpending"]):
        properties = _properties(answer)
        # IRPending, Healthy, Passed, "" (not null) and the 2001-01-01 placeholder (not null)
        for key in (
            "protectionState",
            "protectionStatus",
            "healthStatus",
            "lastBackupStatus",
            "lastBackupTime",
        ):
            assert properties[key] == expected[key], key
        for key in ("lastRecoveryPoint", "healthDetails"):
            assert key not in expected and key not in properties, key
        # a full URL, not an ARM id
        assert expected["vaultId"].startswith(f"{ARM_HOST}/subscriptions/")
        assert properties["vaultId"].startswith(f"{ARM_HOST}/subscriptions/")


def test_a_backed_up_item_reads_as_recorded(answers: dict[str, Answer]) -> None:
    expected = _recorded_properties(CLI, "items_protected")
    for answer in (answers["items_protected"], answers["item_protected"]):
        properties = _properties(answer)
        for key in ("protectionState", "protectionStatus", "healthStatus", "lastBackupStatus"):
            assert properties[key] == expected[key], key
        assert properties["lastBackupTime"] != _recorded_properties(CLI, "items_irpending")["lastBackupTime"]
        assert "lastRecoveryPoint" in properties
        assert [(d["code"], d["title"]) for d in properties["healthDetails"]] == [
            (d["code"], d["title"]) for d in expected["healthDetails"]
        ]


def test_an_operation_reads_not_ended_then_names_its_job_as_recorded(answers: dict[str, Answer]) -> None:
    running, expected_running = (
        answers["protect_operation_running"].body,
        recorded(CLI, "protect_operation_running")["body"],
    )
    assert (running["status"], running["endTime"]) == (
        expected_running["status"],
        expected_running["endTime"],
    )
    assert "properties" not in running and "properties" not in expected_running
    for name in ("protect_operation_done", "backup_operation"):  # backup now: Succeeded at the first poll
        done, expected_done = answers[name].body, recorded(CLI, name)["body"]
        assert done["status"] == expected_done["status"] == "Succeeded"
        assert done["properties"]["objectType"] == expected_done["properties"]["objectType"]


def _tasks(properties: dict[str, Any]) -> list[tuple[str, str]]:
    return [(task["taskId"], task["status"]) for task in properties["extendedInfo"]["tasksList"]]


def test_a_running_backup_job_has_no_end_time_and_its_tasks_wait_as_recorded(
    answers: dict[str, Answer],
) -> None:
    properties, expected = (
        _properties(answers["backup_job_running"]),
        _recorded_properties(CLI, "backup_job_running"),
    )
    assert "endTime" not in expected and "endTime" not in properties
    assert properties["status"] == expected["status"]
    assert properties["actionsInfo"] == expected["actionsInfo"]
    assert _tasks(properties) == _tasks(expected)
    for task, recorded_task in zip(
        properties["extendedInfo"]["tasksList"], expected["extendedInfo"]["tasksList"], strict=True
    ):
        for key in ("startTime", "endTime"):  # a time not reached yet is .NET's MinValue, not null
            assert (task[key] == NOT_REACHED) == (recorded_task[key] == NOT_REACHED), (task["taskId"], key)
    assert set(properties["extendedInfo"]["propertyBag"]) == set(expected["extendedInfo"]["propertyBag"])
    assert (
        properties["extendedInfo"]["internalPropertyBag"] == expected["extendedInfo"]["internalPropertyBag"]
    )


def test_a_finished_job_reads_as_recorded(answers: dict[str, Answer]) -> None:
    for name in ("backup_job_completed", "configure_job_completed"):
        properties, expected = _properties(answers[name]), _recorded_properties(CLI, name)
        assert properties["status"] == expected["status"], name
        assert "endTime" in properties, name
        assert _tasks(properties) == _tasks(expected), name
        times = [
            task[key] for task in properties["extendedInfo"]["tasksList"] for key in ("startTime", "endTime")
        ]
        assert NOT_REACHED not in times, name
        assert set(properties["extendedInfo"]["propertyBag"]) == set(
            expected["extendedInfo"]["propertyBag"]
        ), name
    configure = _properties(answers["configure_job_completed"])["extendedInfo"]["propertyBag"]
    assert configure["Policy Name"] == "DefaultPolicy"
    expiry = _properties(answers["backup_job_completed"])["extendedInfo"]["propertyBag"]
    recorded_expiry = _recorded_properties(CLI, "backup_job_completed")["extendedInfo"]["propertyBag"]
    pattern = r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M"  # .NET's en-US general date format
    key = "Recovery Point Expiry Time in UTC"
    assert re.fullmatch(pattern, recorded_expiry[key]) and re.fullmatch(pattern, expiry[key])


def test_job_lists_carry_no_extended_info_as_recorded(answers: dict[str, Answer]) -> None:
    for name in ("job_list", "job_list_in_progress"):
        expected = recorded(CLI, name)["body"]["value"]
        listed = answers[name].body["value"]
        assert listed, name
        assert not any("extendedInfo" in job["properties"] for job in expected)
        assert not any("extendedInfo" in job["properties"] for job in listed), name
    running = answers["job_list_in_progress"].body["value"]
    assert all(
        job["properties"]["status"] == "InProgress" and "endTime" not in job["properties"] for job in running
    )


def test_backup_status_sends_exactly_the_recorded_keys(answers: dict[str, Answer]) -> None:
    # absent, not null: an unprotected VM has no vaultId key at all
    for name in ("backup_status_protected", "backup_status_not_protected"):
        expected, answer = recorded(C7N, name)["body"], answers[name].body
        assert set(answer) == set(expected), name
        assert answer["protectionStatus"] == expected["protectionStatus"]
        assert answer["objectType"] == expected["objectType"]
        # the names the service would use, lower-case `vm;` here (unlike the items' `VM;`)
        assert answer["containerName"].startswith("iaasvmcontainer;iaasvmcontainerv2;")
        assert answer["protectedItemName"].startswith(expected["protectedItemName"].split(";")[0] + ";")
    # here an ARM id, where an item's vaultId is a URL
    assert answers["backup_status_protected"].body["vaultId"].startswith("/subscriptions/")


def test_protectable_items_are_named_as_recorded(answers: dict[str, Answer]) -> None:
    expected = recorded(CLI, "protectable_items")["body"]["value"][0]
    listed = answers["protectable_items"].body["value"][0]
    # the name is the container property, no `vm;` prefix; the id ends in the `vm;` item name
    assert listed["name"].split(";")[0] == expected["name"].split(";")[0] == "iaasvmcontainerv2"
    assert last_segment(listed["id"]).startswith("vm;") and last_segment(expected["id"]).startswith("vm;")


def _operation_route(url: str) -> list[str]:
    """The fixed words of an operation URL after the vault: backupFabrics, …, operationResults."""
    segments = urlsplit(url).path.split("/")
    after_vault = segments[[s.lower() for s in segments].index("vaults") + 2 :]
    return [segment.lower() for segment in after_vault[0::2]]


@pytest.mark.parametrize(
    "name", ["refresh_containers", "refresh_result_running", "protect_put", "backup_post"]
)
def test_an_accepted_request_points_to_its_operation_as_recorded(
    answers: dict[str, Answer], name: str
) -> None:
    interaction = recorded(CLI, name)
    for header, url in interaction["headers"].items():
        if header in READ_HEADERS and header in answers[name].headers:
            assert _operation_route(answers[name].headers[header]) == _operation_route(url), header


def test_logs_ingestion_refuses_an_unknown_rule_as_recorded(answers: dict[str, Answer]) -> None:
    interaction, answer = recorded(MONITOR, "ingestion_unknown_rule"), answers["ingestion_unknown_rule"]
    assert answer.headers["x-ms-error-code"] == interaction["headers"]["x-ms-error-code"]
    assert answer.body == interaction["body"]  # the same rule id, so the same words


CELL_TYPES: dict[str, type | tuple[type, ...]] = {
    "datetime": str,
    "string": str,
    "real": (int, float),
    "long": int,
    "bool": bool,
    "dynamic": str,
}


def test_a_log_analytics_table_has_the_recorded_columns(answers: dict[str, Answer]) -> None:
    expected = recorded(MONITOR, "query_table")["body"]["tables"][0]
    table = answers["query_table"].body["tables"][0]
    assert table["name"] == expected["name"]
    # group-by columns first, then the aggregates, with Kusto's types
    assert table["columns"] == expected["columns"]
    assert table["rows"], "the emulated workspace holds one request of the last hour"
    for row in table["rows"]:
        for cell, column in zip(row, table["columns"], strict=True):
            kind = CELL_TYPES[column["type"]]
            if kind is bool:
                assert isinstance(cell, bool), column
            else:
                assert isinstance(cell, kind) and not isinstance(cell, bool), column


def test_a_log_analytics_semantic_error_reads_as_recorded(answers: dict[str, Answer]) -> None:
    def chain(error: dict[str, Any]) -> list[str]:
        codes = []
        inner: dict[str, Any] | None = error
        while inner is not None:
            codes.append(inner["code"])
            inner = inner.get("innererror")
        return codes

    expected, answer = recorded(MONITOR, "query_semantic_error")["body"], answers["query_semantic_error"].body
    assert chain(answer["error"]) == chain(expected["error"])  # BadArgumentError > SemanticError > SEM0100
    assert answer["error"]["message"] == expected["error"]["message"]
    # Accepted: the emulator does not name the operator ("'where' operator: ") before the cause.
    assert expected["error"]["innererror"]["innererror"]["message"].endswith(
        answer["error"]["innererror"]["innererror"]["message"]
    )


def test_resource_graph_answers_the_recorded_columns_with_their_types(answers: dict[str, Answer]) -> None:
    expected = recorded(C7N, "resource_graph_table")["body"]["data"]["columns"]
    columns = {
        column["name"]: column["type"] for column in answers["resource_graph_table"].body["data"]["columns"]
    }
    assert {column["name"]: columns.get(column["name"]) for column in expected} == {
        column["name"]: column["type"] for column in expected
    }
