"""Azure Monitor emulation through the real SDK clients: Logs Ingestion, Log Analytics query, log alerts."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsQueryClient, LogsQueryResult, LogsTable

from emulator import Emulator, EmulatorServer
from emulator.core.clock import DEFAULT_START
from emulator.monitor.models import MonitorBackend
from tests.conftest import StaticToken

WORKSPACE_ID = "5a1e0c7e-2b7d-4e61-9a0c-8d1f7b0e4a21"
DCR_ID = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-BackupJobOutcomes"
TABLE = "BackupJobOutcomes_CL"
UPLOAD_ROUTE = "POST /dataCollectionRules/{ruleId}/streams/{stream}"
COLUMNS = [
    {"name": "TimeGenerated", "type": "datetime"},
    {"name": "RunId", "type": "guid"},
    {"name": "VmName", "type": "string"},
    {"name": "Outcome", "type": "string"},
    {"name": "Attempt", "type": "int"},
    {"name": "DurationMs", "type": "long"},
    {"name": "Score", "type": "real"},
    {"name": "Retried", "type": "boolean"},
    {"name": "Details", "type": "dynamic"},
]
REPEATED = [{"name": "A", "type": "string"}, {"name": "A", "type": "int"}]
FAILURES_RULE = {
    "name": "backup-failures",
    "workspace": "law-backupwarden",
    "query": 'BackupJobOutcomes_CL | where Outcome == "Failed"',
    "frequency_s": 300,
    "window_s": 600,
    "threshold": {"operator": "GreaterThan", "value": 0},
    "dimensions": ["VmName"],
    "severity": 1,
    "description": "A VM backup failed",
}


def scenario(**monitor: Any) -> dict[str, Any]:
    """One workspace and one DCR; the clock frozen so only `advance` moves it."""
    return {
        "clock": {"scale": 0},
        "monitor": {
            "workspaces": [{"name": "law-backupwarden", "id": WORKSPACE_ID}],
            "dcrs": [
                {
                    "name": "dcr-backupwarden",
                    "immutable_id": DCR_ID,
                    "streams": {
                        STREAM: {"columns": COLUMNS, "output_table": TABLE, "workspace": "law-backupwarden"}
                    },
                }
            ],
            **monitor,
        },
    }


def outcome(vm: str, result: str = "Succeeded", **extra: Any) -> MutableMapping[str, Any]:
    return {"VmName": vm, "Outcome": result, **extra}


@pytest.fixture
def load(emulator: Emulator) -> Callable[..., MonitorBackend]:
    def load_with(**monitor: Any) -> MonitorBackend:
        emulator.load_scenario(scenario(**monitor))
        return emulator.backend(MonitorBackend)

    return load_with


@pytest.fixture
def monitor(load: Callable[..., MonitorBackend]) -> MonitorBackend:
    return load()


@pytest.fixture
def ingestion(emulator_server: EmulatorServer) -> LogsIngestionClient:
    return LogsIngestionClient(
        endpoint=emulator_server.endpoint,
        credential=StaticToken(),
        connection_verify=emulator_server.ca_bundle,
    )


@pytest.fixture
def logs(emulator_server: EmulatorServer) -> LogsQueryClient:
    return LogsQueryClient(
        StaticToken(), endpoint=emulator_server.endpoint, connection_verify=emulator_server.ca_bundle
    )


@pytest.fixture
def http(emulator_server: EmulatorServer) -> requests.Session:
    session = requests.Session()
    session.verify = emulator_server.ca_bundle
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
    return session


def upload_url(
    server: EmulatorServer, rule: str = DCR_ID, stream: str = STREAM, version: str = "2023-01-01"
) -> str:
    return f"{server.endpoint}/dataCollectionRules/{rule}/streams/{stream}?api-version={version}"


def primary_table(logs: LogsQueryClient, query: str, timespan: Any, **kwargs: Any) -> LogsTable:
    result = logs.query_workspace(WORKSPACE_ID, query, timespan=timespan, **kwargs)
    assert isinstance(result, LogsQueryResult)  # not a partial result
    return result.tables[0]


def count_rows(logs: LogsQueryClient, query: str = TABLE, timespan: Any = None) -> int:
    return int(primary_table(logs, f"{query} | count", timespan).rows[0][0])


def error_of(exc: pytest.ExceptionInfo[HttpResponseError]) -> dict[str, Any]:
    assert exc.value.response is not None
    return dict(json.loads(exc.value.response.text())["error"])


# --- Logs Ingestion API --------------------------------------------------------------------------
def test_sdk_upload_lands_typed_rows_in_the_workspace_table(
    monitor: MonitorBackend, ingestion: LogsIngestionClient
) -> None:
    ingestion.upload(
        DCR_ID,
        STREAM,
        [
            outcome(
                "vm-a",
                "Failed",
                TimeGenerated="2026-11-25T07:30:00.1234567Z",
                RunId="C512B59C-4005-40E2-B13D-AC29CFB46AF4",
                Attempt=2,
                DurationMs=5_000_000_000,
                Score=1,
                Retried=True,
                Details={"error": "UserErrorGuestAgentStatusUnavailable", "codes": [1, 2]},
            ),
            outcome("vm-b"),
        ],
    )

    first, second = monitor.rows("law-backupwarden", TABLE)
    assert first == {
        "TenantId": WORKSPACE_ID,
        "TimeGenerated": datetime(2026, 11, 25, 7, 30, 0, 123456, tzinfo=UTC),
        "RunId": "c512b59c-4005-40e2-b13d-ac29cfb46af4",
        "VmName": "vm-a",
        "Outcome": "Failed",
        "Attempt": 2,
        "DurationMs": 5_000_000_000,
        "Score": 1.0,
        "Retried": True,
        "Details": '{"error":"UserErrorGuestAgentStatusUnavailable","codes":[1,2]}',
        "Type": TABLE,
    }
    assert second["TimeGenerated"] == DEFAULT_START  # no TimeGenerated: the ingestion time
    assert second["Attempt"] is None


def test_sdk_chunks_a_list_over_1_mb_and_every_row_lands(
    emulator: Emulator, monitor: MonitorBackend, ingestion: LogsIngestionClient
) -> None:
    rows = [outcome(f"vm-{i}", Details={"log": "x" * 600}) for i in range(2500)]
    assert len(json.dumps(rows)) > 1024 * 1024

    ingestion.upload(DCR_ID, STREAM, rows)

    assert emulator.requests.counts()[UPLOAD_ROUTE] >= 2
    assert len(monitor.rows("law-backupwarden", TABLE)) == 2500


def test_plain_json_body_without_gzip_is_accepted(
    monitor: MonitorBackend, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    answer = http.post(
        upload_url(emulator_server),
        data=json.dumps([outcome("vm-plain")]),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )
    assert answer.status_code == 204
    assert [r["VmName"] for r in monitor.rows("law-backupwarden", TABLE)] == ["vm-plain"]


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (outcome("vm-a", Bogus=1), "column 'Bogus' is not declared"),
        (outcome("vm-a", Attempt="two"), "column 'Attempt' is declared as 'int'"),
        (outcome("vm-a", Attempt=2**40), "out of range for int"),
        (outcome("vm-a", Retried="yes"), "column 'Retried' is declared as 'bool'"),
        (outcome("vm-a", TimeGenerated="yesterday"), "not an ISO 8601 datetime"),
        (outcome("vm-a", RunId="not-a-guid"), "is not a GUID"),
    ],
)
def test_rows_that_do_not_match_the_stream_are_400(
    monitor: MonitorBackend, ingestion: LogsIngestionClient, row: MutableMapping[str, Any], fragment: str
) -> None:
    with pytest.raises(HttpResponseError) as exc:
        ingestion.upload(DCR_ID, STREAM, [outcome("vm-ok"), row])
    assert exc.value.status_code == 400
    assert error_of(exc)["code"] == "InvalidPayload"
    assert fragment in error_of(exc)["message"]
    assert monitor.rows("law-backupwarden", TABLE) == []  # the whole call is refused


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"VmName": "vm-a"}', "InvalidPayload"),
        (b"[1, 2]", "InvalidPayload"),
        (b"[{", "InvalidPayload"),
    ],
)
def test_a_body_that_is_not_a_json_array_of_objects_is_400(
    monitor: MonitorBackend, http: requests.Session, emulator_server: EmulatorServer, body: bytes, code: str
) -> None:
    answer = http.post(
        upload_url(emulator_server),
        data=gzip.compress(body),
        headers={"Authorization": "Bearer t", "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert answer.headers["x-ms-error-code"] == code


def test_unknown_rule_and_unknown_stream_are_404(
    monitor: MonitorBackend, ingestion: LogsIngestionClient
) -> None:
    with pytest.raises(HttpResponseError) as no_rule:
        ingestion.upload("dcr-ffffffffffffffffffffffffffffffff", STREAM, [outcome("vm-a")])
    assert no_rule.value.status_code == 404
    assert error_of(no_rule) == {
        "code": "NotFound",
        "message": "Data collection rule with immutable Id 'dcr-ffffffffffffffffffffffffffffffff' not found.",
    }

    with pytest.raises(HttpResponseError) as no_stream:
        ingestion.upload(DCR_ID, "Custom-Nope", [outcome("vm-a")])
    assert no_stream.value.status_code == 404
    assert STREAM in error_of(no_stream)["message"]


def test_a_call_over_1_mb_is_413(
    monitor: MonitorBackend, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    body = b"[" + b" " * (1024 * 1024) + b"]"
    answer = http.post(
        upload_url(emulator_server),
        data=body,
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "ContentLengthLimitExceeded"
    assert answer.json()["error"]["message"].startswith(
        "Maximum allowed content length: 1048576 bytes (1 MB)."
    )


def test_upload_needs_a_bearer_token_and_a_known_api_version(
    monitor: MonitorBackend, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    body = json.dumps([outcome("vm-a")])
    assert http.post(upload_url(emulator_server), data=body).status_code == 401
    bearer = {"Authorization": "Bearer t"}
    missing = http.post(upload_url(emulator_server).split("?")[0], data=body, headers=bearer)
    assert missing.status_code == 400
    preview = http.post(upload_url(emulator_server, version="2021-11-01-preview"), data=body, headers=bearer)
    assert preview.status_code == 204


def test_lenient_ingestion_drops_what_the_real_service_drops(
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    monitor = load(strict_ingestion=False)
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", Bogus=1, Attempt="two")])
    not_an_array = http.post(
        upload_url(emulator_server), data=b'{"VmName": "x"}', headers={"Authorization": "Bearer t"}
    )

    assert not_an_array.status_code == 204
    [row] = monitor.rows("law-backupwarden", TABLE)
    assert row["VmName"] == "vm-a"
    assert row["Attempt"] is None
    assert "Bogus" not in row


def test_rows_become_queryable_after_the_ingestion_delay(
    emulator: Emulator,
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    logs: LogsQueryClient,
) -> None:
    load(ingestion_delay_s=90)
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a"), outcome("vm-b")])

    assert count_rows(logs) == 0
    emulator.advance(89)
    assert count_rows(logs) == 0
    emulator.advance(1)
    assert count_rows(logs) == 2


# --- Log Analytics query API ---------------------------------------------------------------------
def test_query_returns_kusto_types_and_json_values(
    monitor: MonitorBackend, ingestion: LogsIngestionClient, logs: LogsQueryClient
) -> None:
    ingestion.upload(
        DCR_ID,
        STREAM,
        [
            outcome(
                "vm-a",
                "Failed",
                RunId="c512b59c-4005-40e2-b13d-ac29cfb46af4",
                Attempt=3,
                DurationMs=42,
                Score=0.5,
                Retried=False,
                Details={"a": [1, 2]},
            )
        ],
    )

    table = primary_table(
        logs, f"{TABLE} | extend Elapsed = now() - TimeGenerated, Hours = Attempt * 2", timedelta(hours=1)
    )

    assert dict(zip(table.columns, table.columns_types, strict=True)) == {
        "TenantId": "string",
        "TimeGenerated": "datetime",
        "RunId": "guid",
        "VmName": "string",
        "Outcome": "string",
        "Attempt": "int",
        "DurationMs": "long",
        "Score": "real",
        "Retried": "bool",
        "Details": "dynamic",
        "Type": "string",
        "Elapsed": "timespan",
        "Hours": "long",
    }
    row = table.rows[0]
    assert row["TimeGenerated"] == DEFAULT_START
    assert (row["RunId"], row["Attempt"], row["DurationMs"], row["Score"], row["Retried"]) == (
        "c512b59c-4005-40e2-b13d-ac29cfb46af4",
        3,
        42,
        0.5,
        False,
    )
    assert json.loads(row["Details"]) == {"a": [1, 2]}  # dynamic travels as JSON text
    assert row["Elapsed"] == "00:00:00"
    assert row["Type"] == TABLE


def test_timespan_restricts_rows_on_time_generated(
    monitor: MonitorBackend, ingestion: LogsIngestionClient, logs: LogsQueryClient
) -> None:
    now = DEFAULT_START
    ingestion.upload(
        DCR_ID,
        STREAM,
        [
            outcome("old", TimeGenerated=(now - timedelta(hours=2)).isoformat()),
            outcome("recent", TimeGenerated=(now - timedelta(minutes=30)).isoformat()),
            outcome("latest", TimeGenerated=(now - timedelta(minutes=1)).isoformat()),
        ],
    )

    assert count_rows(logs, timespan=timedelta(hours=1)) == 2
    assert count_rows(logs, timespan=(now - timedelta(hours=3), now - timedelta(hours=1))) == 1
    assert count_rows(logs, timespan=(now - timedelta(hours=3), timedelta(minutes=150))) == 2
    assert count_rows(logs, timespan=None) == 3


def test_get_query_takes_query_and_timespan_from_the_url(
    monitor: MonitorBackend,
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a"), outcome("vm-b", "Failed")])

    answer = http.get(
        f"{emulator_server.endpoint}/v1/workspaces/{WORKSPACE_ID}/query",
        params={"query": f'{TABLE} | where Outcome == "Failed" | project VmName', "timespan": "PT1H"},
        headers={"Authorization": "Bearer t"},
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "tables": [
            {"name": "PrimaryResult", "columns": [{"name": "VmName", "type": "string"}], "rows": [["vm-b"]]}
        ]
    }


def test_additional_workspaces_are_unioned(
    monitor: MonitorBackend, ingestion: LogsIngestionClient, logs: LogsQueryClient
) -> None:
    second = monitor.add_workspace("law-second")
    other = monitor.add_dcr(
        "dcr-second",
        {STREAM: {"columns": COLUMNS, "output_table": TABLE, "workspace": "law-second"}},
    )
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a")])
    ingestion.upload(other.immutable_id, STREAM, [outcome("vm-b"), outcome("vm-c")])

    table = primary_table(
        logs,
        f"{TABLE} | summarize n = count() by TenantId | order by n asc",
        None,
        additional_workspaces=["law-second"],
    )

    assert [list(r) for r in table.rows] == [[WORKSPACE_ID, 1], [second.customer_id, 2]]


def test_kql_syntax_error_has_the_service_error_shape(monitor: MonitorBackend, logs: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as exc:
        logs.query_workspace(WORKSPACE_ID, "completely invalid syntax", timespan=timedelta(days=1))

    assert exc.value.status_code == 400
    error = error_of(exc)
    assert error["code"] == "BadArgumentError"
    assert error["message"] == "The request had some invalid properties"
    assert error["correlationId"]
    assert error["innererror"] == {
        "code": "SyntaxError",
        "message": "A recognition error occurred in the query.",
        "innererror": {
            "code": "SYN0002",
            "message": "Query could not be parsed at 'invalid' on line [1,11]",
            "line": 1,
            "pos": 11,
            "token": "invalid",
        },
    }


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ("Nope_CL | take 1", "SEM0100", "Failed to resolve table or column expression named 'Nope_CL'"),
        (f"{TABLE} | where Bogus == 1", "SEM0100", "named 'Bogus'"),
        (f"{TABLE} | make-series n = count() on TimeGenerated step 1h", "EmulatorUnsupported", "duckdb-kql"),
    ],
)
def test_kql_semantic_errors_are_400(
    monitor: MonitorBackend, logs: LogsQueryClient, query: str, code: str, fragment: str
) -> None:
    with pytest.raises(HttpResponseError) as exc:
        logs.query_workspace(WORKSPACE_ID, query, timespan=None)
    assert exc.value.status_code == 400
    inner = error_of(exc)["innererror"]
    assert inner["code"] == "SemanticError"
    assert inner["innererror"]["code"] == code
    assert fragment in inner["innererror"]["message"]


def test_unknown_workspace_is_404_path_not_found(monitor: MonitorBackend, logs: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as exc:
        logs.query_workspace("00000000-1111-2222-3333-444444444444", f"{TABLE} | count", timespan=None)
    assert exc.value.status_code == 404
    assert error_of(exc)["code"] == "PathNotFoundError"
    assert error_of(exc)["message"] == "The requested path does not exist"


def test_a_malformed_timespan_is_400(
    monitor: MonitorBackend, http: requests.Session, emulator_server: EmulatorServer
) -> None:
    answer = http.post(
        f"{emulator_server.endpoint}/v1/workspaces/{WORKSPACE_ID}/query",
        json={"query": TABLE, "timespan": "twelve hours"},
        headers={"Authorization": "Bearer t"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["innererror"]["code"] == "InvalidTimespanFormat"


# --- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        (
            {"workspaces": [{"name": "w", "bogus": 1}]},
            "monitor.workspaces[0]: workspace: unknown keys ['bogus']",
        ),
        ({"workspaces": [{"name": "w", "id": "nope"}]}, "monitor.workspaces[0]: badly formed"),
        (
            {
                "workspaces": [{"name": "w"}],
                "dcrs": [
                    {
                        "name": "d",
                        "streams": {
                            "Custom-X": {
                                "columns": [{"name": "A", "type": "integer"}],
                                "output_table": "X_CL",
                            }
                        },
                    }
                ],
            },
            "monitor.dcrs[0]: 'integer' is not a column type",
        ),
        (
            {
                "workspaces": [{"name": "w"}],
                "dcrs": [
                    {
                        "name": "d",
                        "streams": {
                            "Custom-X": {"columns": [], "output_table": "X_CL", "workspace": "elsewhere"}
                        },
                    }
                ],
            },
            "monitor.dcrs[0]: no workspace 'elsewhere'",
        ),
        (
            {
                "workspaces": [{"name": "w"}],
                "dcrs": [
                    {"name": "d", "streams": {"Custom-X": {"columns": REPEATED, "output_table": "X_CL"}}}
                ],
            },
            "monitor.dcrs[0]: stream 'Custom-X': column names repeat",
        ),
        (
            {
                "workspaces": [{"name": "w"}],
                "alert_rules": [
                    {
                        "name": "r",
                        "workspace": "w",
                        "query": "T",
                        "threshold": {"operator": "Above", "value": 1},
                    }
                ],
            },
            "monitor.alert_rules[0]: threshold operator 'Above'",
        ),
        ({"ingestion_delay_s": -1}, "monitor.ingestion_delay_s must be a number >= 0"),
        ({"alerts": []}, "monitor: unknown keys ['alerts']"),
    ],
)
def test_configure_names_the_bad_entry(emulator: Emulator, section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as exc:
        emulator.backend(MonitorBackend).configure(section)
    assert fragment in str(exc.value)


# --- log search alerts ---------------------------------------------------------------------------
def test_alert_rule_fires_per_dimension_then_resolves(
    emulator: Emulator,
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    http: requests.Session,
) -> None:
    monitor = load(alert_rules=[FAILURES_RULE])
    ingestion.upload(
        DCR_ID,
        STREAM,
        [outcome("vm-a", "Failed"), outcome("vm-a", "Failed"), outcome("vm-b", "Failed"), outcome("vm-c")],
    )

    emulator.advance(300)
    fired = monitor.outbox()
    assert [p["data"]["essentials"]["monitorCondition"] for p in fired] == ["Fired", "Fired"]
    criteria = [p["data"]["alertContext"]["condition"]["allOf"][0] for p in fired]
    assert [c["dimensions"] for c in criteria] == [
        [{"name": "VmName", "value": "vm-a"}],
        [{"name": "VmName", "value": "vm-b"}],
    ]
    assert [c["metricValue"] for c in criteria] == [2, 1]
    essentials = fired[0]["data"]["essentials"]
    # The keys of Microsoft's sample payload for log search alerts (API 2021-08-01 and later).
    assert set(essentials) == {
        "alertId", "alertRule", "severity", "signalType", "monitorCondition", "monitoringService",
        "alertTargetIDs", "configurationItems", "originAlertId", "firedDateTime", "description",
        "essentialsVersion", "alertContextVersion",
    }  # fmt: skip
    assert set(criteria[0]) == {
        "searchQuery", "metricMeasureColumn", "targetResourceTypes", "operator", "threshold",
        "timeAggregation", "dimensions", "metricValue", "failingPeriods", "linkToSearchResultsUI",
        "linkToFilteredSearchResultsUI", "linkToSearchResultsAPI", "linkToFilteredSearchResultsAPI",
    }  # fmt: skip
    assert fired[0]["schemaId"] == "azureMonitorCommonAlertSchema"
    assert fired[0]["data"]["alertContext"]["conditionType"] == "LogQueryCriteria"
    assert essentials["alertRule"] == "backup-failures"
    assert essentials["severity"] == "Sev1"
    assert essentials["signalType"] == "Log"
    assert essentials["monitoringService"] == "Log Alerts V2"
    assert essentials["firedDateTime"] == "2026-11-25T08:05:00Z"
    assert essentials["configurationItems"] == ["vm-a"]
    assert "resolvedDateTime" not in essentials
    condition = fired[0]["data"]["alertContext"]["condition"]
    assert (condition["windowSize"], condition["windowStartTime"], condition["windowEndTime"]) == (
        "PT10M",
        "2026-11-25T07:55:00Z",
        "2026-11-25T08:05:00Z",
    )
    linked = http.get(criteria[0]["linkToFilteredSearchResultsAPI"], headers={"Authorization": "Bearer t"})
    assert linked.status_code == 200
    assert [row[3] for row in linked.json()["tables"][0]["rows"]] == ["vm-a", "vm-a"]

    emulator.advance(300)  # the rows are still inside the 10-minute window: no new notification
    assert len(monitor.outbox()) == 2

    emulator.advance(300)
    resolved = monitor.outbox()[2:]
    assert [p["data"]["essentials"]["monitorCondition"] for p in resolved] == ["Resolved", "Resolved"]
    assert [p["data"]["essentials"]["alertId"] for p in resolved] == [
        p["data"]["essentials"]["alertId"] for p in fired
    ]
    assert resolved[0]["data"]["essentials"]["resolvedDateTime"] == "2026-11-25T08:15:00Z"
    assert resolved[0]["data"]["alertContext"]["condition"]["allOf"][0]["metricValue"] == 0


def test_a_new_firing_after_resolution_gets_a_new_alert_id(
    emulator: Emulator, load: Callable[..., MonitorBackend], ingestion: LogsIngestionClient
) -> None:
    monitor = load(alert_rules=[FAILURES_RULE])
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])
    emulator.advance(900)  # fired at +5 min, resolved at +15 min
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])
    emulator.advance(300)

    ids = [p["data"]["essentials"]["alertId"] for p in monitor.outbox()]
    conditions = [p["data"]["essentials"]["monitorCondition"] for p in monitor.outbox()]
    assert conditions == ["Fired", "Resolved", "Fired"]
    assert ids[0] == ids[1] != ids[2]


def test_metric_measure_rule_aggregates_a_column(
    emulator: Emulator, load: Callable[..., MonitorBackend], ingestion: LogsIngestionClient
) -> None:
    rule = {
        **FAILURES_RULE,
        "query": 'BackupJobOutcomes_CL | where Outcome == "Failed" | summarize Failures = count() by VmName',
        "metric_column": "Failures",
        "time_aggregation": "Sum",
        "threshold": {"operator": ">=", "value": 2},
    }
    monitor = load(alert_rules=[rule])
    ingestion.upload(
        DCR_ID, STREAM, [outcome("vm-a", "Failed"), outcome("vm-a", "Failed"), outcome("vm-b", "Failed")]
    )

    emulator.advance(300)

    [payload] = monitor.outbox()
    criterion = payload["data"]["alertContext"]["condition"]["allOf"][0]
    assert (criterion["dimensions"], criterion["metricValue"]) == ([{"name": "VmName", "value": "vm-a"}], 2.0)
    assert (criterion["metricMeasureColumn"], criterion["timeAggregation"], criterion["operator"]) == (
        "Failures",
        "Sum",
        "GreaterThanOrEqual",
    )


def test_rule_without_dimensions_fires_on_absence_and_resolves_on_data(
    emulator: Emulator, load: Callable[..., MonitorBackend], ingestion: LogsIngestionClient
) -> None:
    rule = {
        "name": "no-outcomes",
        "workspace": WORKSPACE_ID,
        "query": TABLE,
        "frequency_s": 60,
        "threshold": {"operator": "LessThan", "value": 1},
    }
    monitor = load(alert_rules=[rule])

    emulator.advance(60)
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a")])
    emulator.advance(60)

    fired, resolved = monitor.outbox()
    assert fired["data"]["essentials"]["monitorCondition"] == "Fired"
    assert fired["data"]["essentials"]["configurationItems"] == ["law-backupwarden"]
    assert fired["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"] == []
    assert resolved["data"]["essentials"]["monitorCondition"] == "Resolved"


def test_a_rule_whose_query_fails_records_the_error_and_never_breaks_requests(
    emulator: Emulator, load: Callable[..., MonitorBackend], logs: LogsQueryClient
) -> None:
    monitor = load(alert_rules=[{**FAILURES_RULE, "query": "Nope_CL | count"}])
    emulator.advance(300)  # settling the clock runs the evaluation; it must not raise

    assert count_rows(logs) == 0
    assert monitor.alerts.rules["backup-failures"].last_error == (
        "Failed to resolve table or column expression named 'Nope_CL'"
    )
    assert monitor.outbox() == []


def test_admin_routes_add_a_rule_evaluate_now_and_list_the_outbox(
    monitor: MonitorBackend,
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    base = emulator_server.endpoint
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])

    added = http.post(f"{base}/_emulator/monitor/rules", json=FAILURES_RULE)
    bad = http.post(f"{base}/_emulator/monitor/rules", json={**FAILURES_RULE, "name": "x", "severity": 9})
    evaluated = http.post(f"{base}/_emulator/alerts/evaluate")
    outbox = http.get(f"{base}/_emulator/alerts")

    assert added.status_code == 201
    assert added.json()["id"].endswith("/scheduledqueryrules/backup-failures")
    assert bad.status_code == 400
    assert "severity" in bad.json()["error"]["message"]
    assert evaluated.status_code == 200
    assert [p["data"]["essentials"]["monitorCondition"] for p in evaluated.json()["value"]] == ["Fired"]
    [entry] = outbox.json()["value"]
    assert entry["payload"] == evaluated.json()["value"][0]
    assert entry["delivery"]["state"] == "Stored"  # no webhook configured


# --- webhook delivery ----------------------------------------------------------------------------
class Receiver:
    """A tiny HTTPS webhook receiver on port 0, answering a scripted list of statuses (then 200)."""

    def __init__(self, directory: Path) -> None:
        import ssl

        import trustme

        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.on_post: Callable[[], None] | None = None
        authority = trustme.CA()
        self.ca_bundle = str(directory / "receiver-ca.pem")
        authority.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/alerts"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                if receiver.on_post is not None:
                    receiver.on_post()
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> Receiver:
        import threading

        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path) as running:
        yield running


def test_fired_alert_is_posted_to_the_webhook(
    emulator: Emulator,
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    receiver: Receiver,
) -> None:
    monitor = load(alert_rules=[FAILURES_RULE], webhook_url=receiver.url, webhook_verify=receiver.ca_bundle)
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])

    emulator.advance(300)

    assert monitor.wait_for_deliveries()
    assert receiver.received == monitor.outbox()
    [entry] = monitor.outbox_entries()
    assert entry["delivery"]["state"] == "Delivered"
    assert [a["status"] for a in entry["delivery"]["attempts"]] == [200]


def test_webhook_503_is_retried_on_the_emulated_clock_and_400_is_not(
    emulator: Emulator,
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    receiver: Receiver,
) -> None:
    monitor = load(alert_rules=[FAILURES_RULE], webhook_url=receiver.url, webhook_verify=receiver.ca_bundle)
    receiver.statuses = [503]
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])

    emulator.advance(300)
    assert monitor.wait_for_deliveries()
    assert monitor.outbox_entries()[0]["delivery"]["state"] == "Pending"
    emulator.advance(10)
    assert monitor.wait_for_deliveries()
    assert [a["status"] for a in monitor.outbox_entries()[0]["delivery"]["attempts"]] == [503, 200]
    assert monitor.outbox_entries()[0]["delivery"]["state"] == "Delivered"

    receiver.statuses = [400]
    emulator.advance(600)  # resolves: a second notification, refused for good
    assert monitor.wait_for_deliveries()
    resolved = monitor.outbox_entries()[1]["delivery"]
    assert (resolved["state"], [a["status"] for a in resolved["attempts"]]) == ("Failed", [400])


def test_a_webhook_receiver_may_call_back_into_the_emulator(
    emulator: Emulator,
    load: Callable[..., MonitorBackend],
    ingestion: LogsIngestionClient,
    receiver: Receiver,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    monitor = load(alert_rules=[FAILURES_RULE], webhook_url=receiver.url, webhook_verify=receiver.ca_bundle)
    answers: list[int] = []

    def query_the_failures() -> None:
        answer = http.get(
            f"{emulator_server.endpoint}/v1/workspaces/{WORKSPACE_ID}/query",
            params={"query": f"{TABLE} | count"},
            headers={"Authorization": "Bearer t"},
            timeout=10,
        )
        answers.append(answer.status_code)

    receiver.on_post = query_the_failures
    ingestion.upload(DCR_ID, STREAM, [outcome("vm-a", "Failed")])
    emulator.advance(300)

    assert monitor.wait_for_deliveries(timeout_s=10)
    assert answers == [200]
    assert monitor.outbox_entries()[0]["delivery"]["state"] == "Delivered"
