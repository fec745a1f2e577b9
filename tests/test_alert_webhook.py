"""`alert_webhook` as the Functions host calls it: real `func.HttpRequest` objects through the registered
function, settings from the environment, the de-duplication table and the remediation queue on Azurite.

The function key (auth level FUNCTION) is checked by the Functions host before the handler runs, so it
is not tested here; the secure-webhook token, which the handler checks, is (tests/test_webhook_auth.py).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.monitor.ingestion import LogsIngestionClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupwarden import app as wiring
from backupwarden.adapters.azure.logs_query import LogsQuery, Timespan
from backupwarden.adapters.storage.alert_dedup import AlertDedup, dedup_partition_key
from backupwarden.adapters.storage.queues import WorkQueue
from backupwarden.domain.alert_rules import BACKUP_FAILED
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.times import parse_time
from backupwarden.flows.remediation.intake import (
    MAX_BODY_BYTES,
    AlertIntake,
    IntakeStatus,
    IntakeUnavailable,
    read_alert_body,
)
from backupwarden.flows.remediation.messages import InvalidRemediationWorkItem, RemediationWorkItem
from backupwarden.settings import (
    AZURITE_ACCOUNT_KEY,
    AZURITE_ACCOUNT_NAME,
    Settings,
    SettingsError,
    azurite_connection_string,
)
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_log_analytics
from emulator import Emulator, EmulatorServer
from emulator.monitor.models import MonitorBackend
from tests.alert_webhook_fixtures import (
    VAULT_ID,
    VM_ID,
    WORKSPACE_ID,
    Webhook,
    backup_alert,
    handlers_fixture,  # noqa: F401
    log_alert,
    new_alert_id,
    webhook_fixture,  # noqa: F401
)
from tests.conftest import StaticToken
from tests.lossy_proxy import LossyProxy
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, with_new_alert_id

ROOT = Path(__file__).resolve().parents[1]
COMMON = "azureMonitorCommonAlertSchema"


# --- settings ------------------------------------------------------------------------------------
def test_webhook_settings_defaults() -> None:
    parsed = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert parsed.remediation_queue == "backupwarden-remediate"
    assert parsed.alert_dedup_table == "backupwardenalerts"
    assert (parsed.webhook_audience, parsed.tenant_id, parsed.openid_configuration) == (None, None, None)


def test_the_openid_configuration_defaults_to_the_tenants() -> None:
    tenant = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
    parsed = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BACKUPWARDEN_WEBHOOK_AUDIENCE": "api://backupwarden",
            "BACKUPWARDEN_TENANT_ID": tenant,
        }
    )
    assert parsed.tenant_id == tenant.lower()
    assert parsed.openid_configuration == (
        f"https://login.microsoftonline.com/{tenant.lower()}/v2.0/.well-known/openid-configuration"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BACKUPWARDEN_WEBHOOK_AUDIENCE": "api://x"}, "BACKUPWARDEN_TENANT_ID: missing; required when"),
        ({"BACKUPWARDEN_TENANT_ID": "contoso"}, "BACKUPWARDEN_TENANT_ID: not a GUID: 'contoso'"),
        (
            {"BACKUPWARDEN_WEBHOOK_AUDIENCE": "api://a b"},
            "BACKUPWARDEN_WEBHOOK_AUDIENCE: not a token audience",
        ),
        (
            {"BACKUPWARDEN_OPENID_CONFIGURATION_URL": "http://login.example/x"},
            "BACKUPWARDEN_OPENID_CONFIGURATION_URL: not an https URL",
        ),
        ({"BACKUPWARDEN_REMEDIATION_QUEUE": "Remediate"}, "BACKUPWARDEN_REMEDIATION_QUEUE: not a queue name"),
        (
            {"BACKUPWARDEN_ALERT_DEDUP_TABLE": "alerts-1"},
            "BACKUPWARDEN_ALERT_DEDUP_TABLE: not a valid table name",
        ),
    ],
)
def test_malformed_webhook_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **env})
    assert str(raised.value).startswith(message)


# --- taking alerts in ----------------------------------------------------------------------------
def test_a_fired_log_alert_is_accepted_with_one_work_item(webhook: Webhook) -> None:
    payload = log_alert()

    started = time.monotonic()
    response = webhook.post(payload)
    elapsed = time.monotonic() - started

    assert (response.status_code, webhook.answer(response)) == (202, {"status": "accepted"})
    assert response.mimetype == "application/json"
    assert elapsed < 1.0, "the action group needs a quick answer (creating the queue and table included)"
    [body] = webhook.bodies()  # base64 on the wire, as the queue trigger expects
    assert json.loads(body) == {
        "alert_id": payload["data"]["essentials"]["alertId"],
        "rule": "backupwarden-backup-failed",
        "monitoring_service": "Log Alerts V2",
        "fired_at": "2024-05-06T07:10:31.612725Z",
        "window_start": "2024-05-06T07:00:00Z",
        "window_end": "2024-05-06T07:10:00Z",
        "dimensions": [
            {"name": "VmId", "value": VM_ID},
            {"name": "ErrorCode", "value": "BackUpOperationFailed"},
        ],
        "target_ids": [WORKSPACE_ID.lower()],
    }
    item = RemediationWorkItem.from_json(body)
    assert (item.dimension("vmid"), item.dimension("ErrorCode")) == (VM_ID, "BackUpOperationFailed")


def test_five_deliveries_of_one_alert_enqueue_one_work_item(webhook: Webhook) -> None:
    payload = log_alert()

    statuses = [webhook.answer(webhook.post(payload))["status"] for _ in range(5)]

    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert len(webhook.bodies()) == 1
    assert webhook.message_count() == 1


def test_a_resolved_alert_is_recorded_not_enqueued(webhook: Webhook) -> None:
    alert_id = new_alert_id()
    fired = webhook.post(log_alert(alert_id))
    resolved = [webhook.post(log_alert(alert_id, condition="Resolved")) for _ in range(2)]

    assert webhook.answer(fired)["status"] == "accepted"
    assert [(r.status_code, webhook.answer(r)["status"]) for r in resolved] == [
        (202, "recorded"),
        (202, "duplicate"),
    ]
    assert len(webhook.bodies()) == 1, "only the fired notification is work"
    with webhook.table() as table:
        entities = list(table.query_entities(f"PartitionKey eq '{dedup_partition_key(alert_id)}'"))
    assert sorted((e["RowKey"], e["status"], e["alert_id"]) for e in entities) == [
        ("Fired", "enqueued", alert_id),
        ("Resolved", "recorded", alert_id),
    ]


def test_a_resolved_alert_alone_sends_nothing(webhook: Webhook) -> None:
    response = webhook.post(log_alert(condition="Resolved"))

    assert (response.status_code, webhook.answer(response)) == (202, {"status": "recorded"})
    assert webhook.message_count() == 0


def test_an_azure_backup_built_in_alert_is_accepted(webhook: Webhook) -> None:
    payload = backup_alert()

    response = webhook.post(payload)

    assert (response.status_code, webhook.answer(response)) == (202, {"status": "accepted"})
    [item] = webhook.items()
    assert item.monitoring_service == "Azure Backup"
    assert (item.alert_id, item.rule, item.target_ids) == (
        payload["data"]["essentials"]["alertId"],
        "Backup Failure",
        (VAULT_ID,),
    )
    assert (item.window_start, item.window_end, item.dimensions) == (None, None, ())
    assert item.fired_at == datetime(2024, 5, 6, 7, 12, tzinfo=UTC)


def _without(path: tuple[Any, ...]) -> dict[str, Any]:
    payload = log_alert()
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return payload


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    payload = log_alert()
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return payload


ESSENTIALS = ("data", "essentials")
BAD_INPUTS = [
    pytest.param(
        b'{"schemaId": ', "the body is not JSON: Expecting value at line 1 column 14", id="truncated-json"
    ),
    pytest.param(b"schemaId=x", "the body is not JSON: Expecting value at line 1 column 1", id="form-body"),
    pytest.param(b"", "the body is empty; expected a JSON alert notification", id="empty"),
    pytest.param(b"\xc3\x28", "the body is not JSON: it is not UTF-8 text", id="not-utf8"),
    pytest.param([1, 2], "the body must be a JSON object in the common alert schema", id="array"),
    pytest.param(
        _with(("schemaId",), "AzureMonitorMetricAlert"),
        "schemaId must be 'azureMonitorCommonAlertSchema', not 'AzureMonitorMetricAlert'",
        id="wrong-schema",
    ),
    pytest.param(
        _without(("schemaId",)),
        "schemaId must be 'azureMonitorCommonAlertSchema', not 'None'",
        id="no-schema",
    ),
    pytest.param(
        _with((*ESSENTIALS, "monitoringService"), "Platform"),
        "data.essentials.monitoringService 'Platform' is not one of ['Log Alerts V2', 'Azure Backup']",
        id="metric-alert",
    ),
    pytest.param(
        _with((*ESSENTIALS, "monitoringService"), "Activity Log - Administrative"),
        "data.essentials.monitoringService 'Activity Log - Administrative' is not one of",
        id="activity-log-alert",
    ),
    pytest.param(
        _without((*ESSENTIALS, "alertId")), "data.essentials.alertId must be a non-empty string", id="no-id"
    ),
    pytest.param(
        _with((*ESSENTIALS, "alertRule"), "  "),
        "data.essentials.alertRule must be a non-empty string",
        id="blank-rule",
    ),
    pytest.param(
        _without((*ESSENTIALS, "monitorCondition")),
        "data.essentials.monitorCondition must be a non-empty string",
        id="no-condition",
    ),
    pytest.param(
        _with((*ESSENTIALS, "monitorCondition"), "Acknowledged"),
        "data.essentials.monitorCondition must be Fired or Resolved, not 'Acknowledged'",
        id="other-condition",
    ),
    pytest.param(
        _with((*ESSENTIALS, "firedDateTime"), "yesterday"),
        "data.essentials.firedDateTime is not an ISO-8601 time: 'yesterday'",
        id="bad-time",
    ),
    pytest.param(
        _with(("data", "alertContext", "condition", "windowEndTime"), "9999-12-31T23:59:59-23:59"),
        "data.alertContext.condition.windowEndTime is not an ISO-8601 time: '9999-12-31T23:59:59-23:59'",
        id="time-past-9999-in-utc",
    ),
    pytest.param(
        _with((*ESSENTIALS, "firedDateTime"), "0001-01-01T00:00:00+01:00"),
        "data.essentials.firedDateTime is not an ISO-8601 time: '0001-01-01T00:00:00+01:00'",
        id="time-before-year-1-in-utc",
    ),
    pytest.param(_without(ESSENTIALS), "data.essentials must be an object", id="no-essentials"),
    pytest.param(_without(("data",)), "$.data must be an object", id="no-data"),
    pytest.param(
        _with(("data", "alertContext", "condition", "allOf", 0, "dimensions"), 5),
        "data.alertContext.condition.allOf[0].dimensions must be a list",
        id="dimensions-not-a-list",
    ),
    pytest.param(
        _with((*ESSENTIALS, "alertId"), "a" * 1025),
        "data.essentials.alertId is longer than 1024 characters",
        id="long-alert-id",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_INPUTS)
def test_bad_input_is_rejected_with_the_precise_reason(webhook: Webhook, body: Any, message: str) -> None:
    response = webhook.post(body if isinstance(body, bytes) else json.dumps(body).encode())

    assert response.status_code == 400
    answer = webhook.answer(response)
    assert answer["status"] == "rejected"
    assert answer["reason"].startswith(message)
    assert webhook.message_count() == 0


def test_an_oversized_body_is_rejected(webhook: Webhook) -> None:
    payload = log_alert()
    fill = MAX_BODY_BYTES + 1 - len(json.dumps(payload).encode())
    payload["data"]["essentials"]["description"] += "x" * fill
    body = json.dumps(payload).encode()
    assert len(body) == MAX_BODY_BYTES + 1

    response = webhook.post(body)

    assert response.status_code == 400
    assert webhook.answer(response)["reason"] == "the body is 262145 bytes; the limit is 262144 (256 KiB)"
    assert webhook.message_count() == 0


def test_a_body_at_the_limit_is_accepted(webhook: Webhook) -> None:
    payload = log_alert()
    payload["data"]["essentials"]["description"] += "x" * (MAX_BODY_BYTES - len(json.dumps(payload).encode()))

    response = webhook.post(json.dumps(payload).encode())

    assert webhook.answer(response) == {"status": "accepted"}


def test_an_alert_too_large_for_a_work_item_is_rejected(webhook: Webhook) -> None:
    dimensions = tuple((f"Dim{i}", "v" * 2000) for i in range(30))

    response = webhook.post(log_alert(dimensions=dimensions))

    assert response.status_code == 400
    assert "at most 48000 fit one queue message" in webhook.answer(response)["reason"]
    assert webhook.message_count() == 0


def test_unpaired_surrogates_are_rejected_before_storage(webhook: Webhook) -> None:
    body = json.dumps(log_alert(dimensions=(("VmId", "\ud800"),))).encode()  # ASCII: json escapes it

    response = webhook.post(body)

    assert response.status_code == 400
    assert webhook.answer(response)["reason"] == (
        "the alert holds text that is not valid Unicode (an unpaired surrogate)"
    )


# --- crash safety --------------------------------------------------------------------------------
def _claim_left_by_a_dead_call(webhook: Webhook, alert_id: str, expires: datetime) -> None:
    with webhook.table() as table:
        table.create_table()
        table.create_entity(
            {
                "PartitionKey": dedup_partition_key(alert_id),
                "RowKey": "Fired",
                "alert_id": alert_id,
                "status": "pending",
                "expires": expires,
            }
        )


def test_an_expired_claim_of_a_dead_call_is_taken_over(webhook: Webhook) -> None:
    alert_id = new_alert_id()
    _claim_left_by_a_dead_call(webhook, alert_id, datetime.now(UTC) - timedelta(seconds=1))

    response = webhook.post(log_alert(alert_id))

    assert webhook.answer(response) == {"status": "accepted"}
    assert [item.alert_id for item in webhook.items()] == [alert_id]


def test_a_claim_still_in_flight_is_answered_503_for_a_retry(webhook: Webhook) -> None:
    alert_id = new_alert_id()
    _claim_left_by_a_dead_call(webhook, alert_id, datetime.now(UTC) + timedelta(seconds=30))

    response = webhook.post(log_alert(alert_id))

    assert response.status_code == 503  # action groups retry 503; by then the other call finished
    assert response.headers["Retry-After"] == "30"
    assert webhook.answer(response) == {
        "status": "unavailable",
        "reason": "another delivery of this notification is being taken in",
    }
    assert webhook.message_count() == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connections to it are refused


def _unreachable_queue(webhook: Webhook) -> QueueClient:
    return QueueClient(
        f"http://127.0.0.1:{_closed_port()}/{AZURITE_ACCOUNT_NAME}",
        webhook.queue_name,
        credential={"account_name": AZURITE_ACCOUNT_NAME, "account_key": AZURITE_ACCOUNT_KEY},
        message_encode_policy=TextBase64EncodePolicy(),
        retry_total=0,
    )


def test_a_failed_enqueue_releases_the_claim_so_the_retry_is_not_a_duplicate(webhook: Webhook) -> None:
    notice = read_alert_body(json.dumps(log_alert()).encode())
    with webhook.table() as table, _unreachable_queue(webhook) as broken:
        with pytest.raises(IntakeUnavailable):
            AlertIntake(AlertDedup(table), WorkQueue(broken)).receive(notice)
        assert list(table.list_entities()) == [], "the claim was released"

    retried = webhook.post(json.dumps(log_alert(notice.alert_id)).encode())

    assert webhook.answer(retried) == {"status": "accepted"}
    assert [item.alert_id for item in webhook.items()] == [notice.alert_id]


STORAGE_UNAVAILABLE = {"status": "unavailable", "reason": "storage is unavailable right now"}


def _storage_closed(webhook: Webhook, monkeypatch: pytest.MonkeyPatch, *services: str) -> int:
    """Points the services' endpoints (Table, Queue, Blob) of AzureWebJobsStorage at a closed port."""
    port = _closed_port()
    storage = webhook.storage
    for service in services:
        storage = re.sub(
            rf"{service}Endpoint=http://[^/]+/", f"{service}Endpoint=http://127.0.0.1:{port}/", storage
        )
    assert storage != webhook.storage
    monkeypatch.setenv("AzureWebJobsStorage", storage)
    monkeypatch.setenv("BACKUPWARDEN_HTTP_RETRY_TOTAL", "0")
    return port


@pytest.mark.parametrize("condition", ["Fired", "Resolved"])
def test_a_storage_failure_is_answered_503(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, condition: str
) -> None:
    port = _storage_closed(webhook, monkeypatch, "Table")

    response = webhook.post(log_alert(condition=condition))

    assert (response.status_code, webhook.answer(response)) == (503, STORAGE_UNAVAILABLE)
    assert response.headers["Retry-After"] == "30"
    assert str(port) not in response.get_body().decode(), "no internal host or port in the answer"
    assert any(
        getattr(r, "reason", "").startswith("cannot record the notification in") for r in caplog.records
    )
    assert webhook.message_count() == 0


def test_a_queue_failure_is_answered_503(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _storage_closed(webhook, monkeypatch, "Queue")

    response = webhook.post(log_alert())

    assert (response.status_code, webhook.answer(response)) == (503, STORAGE_UNAVAILABLE)
    assert response.headers["Retry-After"] == "30"
    assert str(port) not in response.get_body().decode()


@pytest.mark.parametrize("condition", ["Fired", "Resolved"])
def test_storage_down_altogether_is_answered_503(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, condition: str
) -> None:
    """Azurite stopped: every storage endpoint refuses connections."""
    _storage_closed(webhook, monkeypatch, "Blob", "Queue", "Table")

    response = webhook.post(log_alert(condition=condition))

    assert (response.status_code, webhook.answer(response)) == (503, STORAGE_UNAVAILABLE)
    assert response.headers["Retry-After"] == "30"


def _table_port(webhook: Webhook) -> int:
    found = re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)/", webhook.storage)
    assert found is not None
    return int(found.group(1))


@pytest.mark.parametrize(("condition", "status"), [("Fired", "accepted"), ("Resolved", "recorded")])
def test_a_notification_whose_record_answer_was_lost_is_still_taken_in_once(
    webhook: Webhook, condition: str, status: str
) -> None:
    notice = read_alert_body(json.dumps(log_alert(condition=condition)).encode())
    port = _table_port(webhook)
    with (
        LossyProxy(port) as proxy,
        TableClient.from_connection_string(
            azurite_connection_string(port, port, proxy.port), table_name=webhook.table_name
        ) as table,
        QueueClient.from_connection_string(
            webhook.storage, webhook.queue_name, message_encode_policy=TextBase64EncodePolicy()
        ) as queue,
    ):
        intake = AlertIntake(AlertDedup(table), WorkQueue(queue))
        table.create_table()
        proxy.lose_answer(f"POST /{AZURITE_ACCOUNT_NAME}/{webhook.table_name}".encode())

        taken_in = intake.receive(notice)

        assert proxy.lost == 1, "the insert reached Azurite and its answer was dropped"
        assert (taken_in.value, intake.receive(notice)) == (status, IntakeStatus.DUPLICATE)
    assert webhook.message_count() == (1 if condition == "Fired" else 0)


# --- the work item -------------------------------------------------------------------------------
def test_a_work_item_round_trips() -> None:
    item = RemediationWorkItem.from_notice(read_alert_body(json.dumps(log_alert()).encode()))

    assert RemediationWorkItem.from_json(item.to_json()) == item


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "a remediation work item must be a JSON object"),
        ('{"alert_id": "a"}', "missing fields: rule, monitoring_service, fired_at"),
        ("rule", "not JSON"),
    ],
)
def test_a_malformed_work_item_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidRemediationWorkItem) as raised:
        RemediationWorkItem.from_json(text)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fired_at": "soon"}, "fired_at is not an ISO-8601 time"),
        ({"window_end": 5}, "window_end must be an ISO-8601 time"),
        ({"rule": ""}, "rule must be a non-empty string"),
        ({"dimensions": [["VmId", "x"]]}, "dimensions: each needs a string name and value"),
        ({"dimensions": {}}, "dimensions must be a list"),
        ({"target_ids": [1]}, "target_ids must be a list of strings"),
    ],
)
def test_a_work_item_with_a_bad_field_is_refused(change: dict[str, Any], message: str) -> None:
    good = json.loads(
        RemediationWorkItem.from_notice(read_alert_body(json.dumps(log_alert()).encode())).to_json()
    )

    with pytest.raises(InvalidRemediationWorkItem) as raised:
        RemediationWorkItem.from_json(json.dumps({**good, **change}))
    assert str(raised.value).startswith(message)


# --- the emulator's alert evaluator --------------------------------------------------------------
def test_a_payload_of_the_emulators_alert_evaluator_is_accepted(
    emulator: Emulator, emulator_server: EmulatorServer, webhook: Webhook
) -> None:
    emulator.load_scenario({"clock": {"scale": 0}})
    provision_log_analytics(emulator)
    monitor = emulator.backend(MonitorBackend)
    monitor.add_alert_rule(
        {
            "name": BACKUP_FAILED.name,
            "workspace": DEMO_WORKSPACE_ID,
            "query": (ROOT / "kql" / f"{BACKUP_FAILED.kql_name}.kql").read_text(encoding="utf-8"),
            "frequency_s": BACKUP_FAILED.frequency.total_seconds(),
            "window_s": BACKUP_FAILED.window.total_seconds(),
            "threshold": {"operator": BACKUP_FAILED.operator, "value": BACKUP_FAILED.threshold},
            "dimensions": list(BACKUP_FAILED.dimensions),
            "severity": BACKUP_FAILED.severity,
            "description": BACKUP_FAILED.description,
        }
    )
    failed: dict[str, Any] = {name: None for name in JOB_OUTCOMES.column_names if name != "TimeGenerated"}
    failed.update(
        RecordId="job-1", JobId="job-1", Operation="Backup", Status="Failed",
        ErrorCode="UserErrorGuestAgentStatusUnavailable", VmId=VM_ID.lower(), VmName="web-01",
        VaultId=VAULT_ID.lower(), Attempt=1,
    )  # fmt: skip
    with LogsIngestionClient(
        endpoint=emulator_server.endpoint,
        credential=StaticToken(),
        connection_verify=emulator_server.ca_bundle,
    ) as ingestion:
        ingestion.upload(DEMO_DCR_ID, JOB_OUTCOMES.stream, [failed])
    emulator.advance(BACKUP_FAILED.frequency.total_seconds())
    [payload] = monitor.outbox()

    response = webhook.post(payload)

    assert (response.status_code, webhook.answer(response)) == (202, {"status": "accepted"})
    [item] = webhook.items()
    assert (item.rule, item.monitoring_service) == (BACKUP_FAILED.name, "Log Alerts V2")
    assert item.dimensions == (
        ("VmId", VM_ID.lower()),
        ("ErrorCode", "UserErrorGuestAgentStatusUnavailable"),
        ("JobId", "job-1"),
    )
    condition = payload["data"]["alertContext"]["condition"]
    assert item.window_end is not None and item.window_start is not None
    assert item.window_end - item.window_start == BACKUP_FAILED.window
    assert item.window_end == datetime.fromisoformat(condition["windowEndTime"].replace("Z", "+00:00"))


# --- the alert's window, as remediation re-queries it ----------------------------------------------
def _record_query_spans(monkeypatch: pytest.MonkeyPatch) -> list[Timespan]:
    """The time spans remediation's queries are run over (then run for real), in order."""
    spans: list[Timespan] = []

    class RecordingLogsQuery(LogsQuery):
        def rows(
            self, query: str, timespan: Timespan, step: str = "log analytics query"
        ) -> list[dict[str, Any]]:
            spans.append(timespan)
            return super().rows(query, timespan, step)

    monkeypatch.setattr(wiring, "LogsQuery", RecordingLogsQuery)
    return spans


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(lambda end: end - timedelta(days=365 * 200), id="200-years"),
        pytest.param(lambda end: end - BACKUP_FAILED.window - timedelta(seconds=1), id="just-over-the-rule"),
        pytest.param(lambda end: end + timedelta(minutes=5), id="starts-after-it-ends"),
    ],
)
def test_an_alert_window_longer_than_the_rules_is_not_queried(
    remediation_bench: RemediationBench,
    handlers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    start: Any,
) -> None:
    """The span reaching Log Analytics is the rule's window (2 days at most, as Azure Monitor allows)."""
    bench = remediation_bench
    api_03 = vm_id_of(PROD, "rg-api", "api-03").lower()
    payload = with_new_alert_id(bench.failure_alert(api_03))
    condition = payload["data"]["alertContext"]["condition"]
    end = parse_time(condition["windowEndTime"])
    condition["windowStartTime"] = start(end).isoformat().replace("+00:00", "Z")
    spans = _record_query_spans(monkeypatch)
    assert bench.deliver(handlers["alert_webhook"], payload) == "accepted"

    outcomes = bench.drain()

    assert spans == [(end - BACKUP_FAILED.window, end)]
    assert [outcome.vm_id for outcome in outcomes] == [api_03], "the failure in the rule's window is found"


def test_an_alert_window_within_the_rules_is_queried_as_it_is(
    remediation_bench: RemediationBench, handlers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    api_03 = vm_id_of(PROD, "rg-api", "api-03").lower()
    payload = with_new_alert_id(bench.failure_alert(api_03))
    condition = payload["data"]["alertContext"]["condition"]
    window = (parse_time(condition["windowStartTime"]), parse_time(condition["windowEndTime"]))
    spans = _record_query_spans(monkeypatch)
    assert bench.deliver(handlers["alert_webhook"], payload) == "accepted"

    bench.drain()

    assert spans == [window]


# --- never a 5xx, never a message for invalid input -----------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
REQUIRED_ESSENTIALS = ("alertId", "alertRule", "monitorCondition", "monitoringService", "firedDateTime")


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return True
    return False


@st.composite
def invalid_bodies(draw: st.DrawFn) -> bytes:
    """Bodies that are invalid by construction: never an alert this webhook takes."""
    kind = draw(st.sampled_from(["bytes", "json", "schema", "service", "essential", "oversized", "nested"]))
    payload = log_alert()
    essentials = payload["data"]["essentials"]
    if kind == "bytes":
        return draw(st.binary(max_size=300).filter(_not_json))
    if kind == "json":
        value = draw(JSON_VALUES.filter(lambda v: not (isinstance(v, dict) and v.get("schemaId") == COMMON)))
        return json.dumps(value).encode()
    if kind == "schema":
        payload["schemaId"] = draw(JSON_VALUES.filter(lambda v: v != COMMON))
    elif kind == "service":
        essentials["monitoringService"] = draw(
            JSON_VALUES.filter(lambda v: v not in ("Log Alerts V2", "Azure Backup"))
        )
    elif kind == "essential":
        name = draw(st.sampled_from(REQUIRED_ESSENTIALS))
        replacement = draw(
            st.none() | st.integers() | st.lists(st.text(), max_size=2) | st.just("") | st.just(" ")
        )
        if replacement is None:
            del essentials[name]
        else:
            essentials[name] = replacement
    elif kind == "oversized":
        essentials["description"] = "x" * draw(st.integers(MAX_BODY_BYTES, MAX_BODY_BYTES + 4096))
    else:
        depth = draw(st.integers(1_000, 100_000))
        return b"[" * depth + b"]" * depth
    return json.dumps(payload).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=invalid_bodies())
def test_invalid_input_is_a_400_and_never_a_message(webhook: Webhook, body: bytes) -> None:
    response = webhook.post(body)

    assert response.status_code == 400, webhook.answer(response)
    assert webhook.answer(response)["status"] == "rejected"
    assert webhook.message_count() == 0


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_alerts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid notification with one value anywhere in it replaced by arbitrary JSON."""
    payload = log_alert(condition=draw(st.sampled_from(["Fired", "Resolved"])))
    path = draw(st.sampled_from(_paths(payload)))
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(JSON_VALUES)
    return copy.deepcopy(payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=mutated_alerts())
def test_mutated_alerts_never_get_a_5xx(webhook: Webhook, payload: dict[str, Any]) -> None:
    before = webhook.message_count()

    response = webhook.post(payload)

    assert response.status_code in (202, 400), webhook.answer(response)
    status = webhook.answer(response)["status"]
    assert webhook.message_count() == before + (1 if status == IntakeStatus.ACCEPTED else 0)
