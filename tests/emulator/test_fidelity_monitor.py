"""The spec examples of the Logs Ingestion API and the Log Analytics query API, replayed against the emulator.

Each test builds the state the example presumes (the rule, the stream, the workspace's rows), sends
the example's request as written and compares the answer with the example's response.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.monitor.ingestion import LogsIngestionClient

from emulator import Emulator, EmulatorServer
from emulator.monitor.models import MonitorBackend
from tests.conftest import StaticToken
from tests.emulator.fidelity import SPECS_ROOT, assert_same_shape, load_example

INGESTION = "monitor/data-plane/ingestion"
QUERY = "operationalinsights/data-plane/Microsoft.OperationalInsights/stable/v1"
# The example rows (2017) write long, real and bool cells as JSON strings ("1", "1.286", "true"),
# and the shape helper compares every cell of a row with the row's first cell. Today's service,
# and azure-monitor-query's LogsTableRow, carry them as JSON numbers and booleans. The rows are
# therefore left out of the shape comparison and checked cell by cell against the example's text.
ROWS = frozenset({"$.tables[0].rows"})
JSON_KINDS = {
    "long": int,
    "int": int,
    "real": float,
    "bool": bool,
    "string": str,
    "datetime": str,
    "guid": str,
}


@pytest.fixture
def restore_clock(emulator: Emulator) -> Iterator[None]:
    """The query examples run in August 2017; put the clock back for the tests that follow."""
    now, scale = emulator.clock.now(), emulator.clock.scale
    yield
    emulator.clock.set(now, scale)


@pytest.fixture
def http(emulator_server: EmulatorServer) -> requests.Session:
    session = requests.Session()
    session.verify = emulator_server.ca_bundle
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
    return session


@pytest.fixture
def ingestion(emulator_server: EmulatorServer) -> LogsIngestionClient:
    return LogsIngestionClient(
        endpoint=emulator_server.endpoint,
        credential=StaticToken(),
        connection_verify=emulator_server.ca_bundle,
    )


def expected_status(example: dict[str, Any]) -> int:
    return int(next(iter(example["responses"])))


# --- Logs Ingestion API --------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["stable/2023-01-01", "preview/2021-11-01-preview"])
def test_upload_example(
    emulator: Emulator, http: requests.Session, emulator_server: EmulatorServer, version: str
) -> None:
    example = load_example(f"{INGESTION}/{version}/examples/post_IngestUsingDataCollectionRule.json")
    params = example["parameters"]
    columns = [
        {"name": "Time", "type": "datetime"},
        {"name": "Computer", "type": "string"},
        {"name": "AdditionalContext", "type": "dynamic"},
    ]
    emulator.load_scenario(
        {
            "monitor": {
                "workspaces": [{"name": "law"}],
                "dcrs": [
                    {
                        "name": "dcr",
                        "immutable_id": params["ruleId"],
                        "streams": {params["stream"]: {"columns": columns, "output_table": "TestStream_CL"}},
                    }
                ],
            }
        }
    )

    answer = http.post(
        f"{emulator_server.endpoint}/dataCollectionRules/{params['ruleId']}/streams/{params['stream']}",
        params={"api-version": params["api-version"]},
        data=gzip.compress(json.dumps(params["body"]).encode()),
        headers={
            name: params[name]
            for name in ("Authorization", "Content-Type", "Content-Encoding", "x-ms-client-request-id")
        },
    )

    assert answer.status_code == expected_status(example) == 204
    assert answer.content == b""
    stored = emulator.backend(MonitorBackend).rows("law", "TestStream_CL")
    assert [(r["Computer"], json.loads(r["AdditionalContext"])) for r in stored] == [
        (item["Computer"], item["AdditionalContext"]) for item in params["body"]
    ]


# --- Log Analytics query API ---------------------------------------------------------------------
def load_usage_example(
    emulator: Emulator, ingestion: LogsIngestionClient, example: dict[str, Any]
) -> dict[str, Any]:
    """A workspace holding the example's `Usage` rows, the clock at the example's day."""
    params = example["parameters"]
    table = example["responses"]["200"]["body"]["tables"][0]
    emulator.load_scenario(
        {
            "clock": {"start": "2017-08-24T12:00:00Z", "scale": 0},
            "monitor": {
                "workspaces": [{"name": "contosoretail-it", "id": params["workspaceId"]}],
                "dcrs": [
                    {
                        "name": "dcr-usage",
                        "immutable_id": "dcr-00000000000000000000000000000001",
                        "streams": {"Custom-Usage": {"columns": table["columns"], "output_table": "Usage"}},
                    }
                ],
            },
        }
    )
    ingestion.upload("dcr-00000000000000000000000000000001", "Custom-Usage", typed_rows(table))
    return dict(table)


def typed_rows(table: dict[str, Any]) -> list[MutableMapping[str, Any]]:
    """The example's cells as the JSON a sender uploads: numbers and booleans as such."""
    convert: dict[str, Callable[[str], Any]] = {
        "long": int,
        "int": int,
        "real": float,
        "bool": lambda text: text == "true",
    }
    rows: list[MutableMapping[str, Any]] = []
    for row in table["rows"]:
        rows.append(
            {
                column["name"]: (None if cell is None else convert.get(column["type"], str)(cell))
                for column, cell in zip(table["columns"], row, strict=True)
            }
        )
    return rows


def as_example_text(cell: Any) -> Any:
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return cell if cell is None or isinstance(cell, str) else str(cell)


def assert_rows_match(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Same columns in the same order, same values as the example's text, JSON kinds by column type."""
    assert actual["columns"] == expected["columns"]
    for row in actual["rows"]:
        for column, cell in zip(actual["columns"], row, strict=True):
            assert cell is None or isinstance(cell, JSON_KINDS[column["type"]]), (column, cell)
    assert sorted(map(str, ([as_example_text(c) for c in r] for r in actual["rows"]))) == sorted(
        map(str, expected["rows"])
    )


@pytest.mark.usefixtures("restore_clock")
def test_post_query_example(
    emulator: Emulator,
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    example = load_example(f"{QUERY}/examples/oms-post-example.json")
    expected_table = load_usage_example(emulator, ingestion, example)

    answer = http.post(
        f"{emulator_server.endpoint}/v1/workspaces/{example['parameters']['workspaceId']}/query",
        json=example["parameters"]["body"],
        headers={"Authorization": "Bearer t"},
    )

    assert answer.status_code == expected_status(example)
    assert_same_shape(example["responses"]["200"]["body"], answer.json(), ignore=ROWS)
    assert_rows_match(expected_table, answer.json()["tables"][0])


@pytest.mark.usefixtures("restore_clock")
def test_get_query_example(
    emulator: Emulator,
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
) -> None:
    example = load_example(f"{QUERY}/examples/oms-get-example.json")
    expected_table = load_usage_example(emulator, ingestion, example)
    params = example["parameters"]

    answer = http.get(
        f"{emulator_server.endpoint}/v1/workspaces/{params['workspaceId']}/query",
        params={"query": params["query"], "timespan": params["timespan"]},
        headers={"Authorization": "Bearer t"},
    )

    assert answer.status_code == expected_status(example)
    assert_same_shape(example["responses"]["200"]["body"], answer.json(), ignore=ROWS)
    assert_rows_match(expected_table, answer.json()["tables"][0])


def load_cross_workspace_state(emulator: Emulator, ingestion: LogsIngestionClient, primary: str) -> None:
    """Rows per (Type, TenantId) as the example counts them: the second workspace's rows are old."""
    workspaces = {
        primary: {"Usage": 1, "BillingFact": 1, "Operation": 7},
        "d436f322-a9f4-4aad-9a7d-271fbf66001c": {"Usage": 1, "BillingFact": 1, "Operation": 5},
        "0c1b8e52-6f0e-4c53-9c8e-4f1f3c2e9a77": {"Usage": 3},
    }
    names = dict(zip(workspaces, ["primary", "draft-test", "draft-test-2"], strict=True))
    columns = [{"name": "Detail", "type": "string"}]
    emulator.load_scenario(
        {
            "clock": {"scale": 0},
            "monitor": {
                "workspaces": [{"name": names[w], "id": w} for w in workspaces],
                "dcrs": [
                    {
                        "name": f"dcr-{names[w]}",
                        "immutable_id": f"dcr-{w.replace('-', '')}",
                        "streams": {
                            f"Custom-{table}": {"columns": columns, "output_table": table, "workspace": w}
                            for table in ("Usage", "BillingFact", "Operation")
                        },
                    }
                    for w in workspaces
                ],
            },
        }
    )
    old = (emulator.now() - timedelta(hours=2)).isoformat()
    for workspace, counts in workspaces.items():
        for table, count in counts.items():
            extra = {"TimeGenerated": old} if names[workspace] == "draft-test-2" else {}
            rows: list[MutableMapping[str, Any]] = [{"Detail": f"{table} {i}", **extra} for i in range(count)]
            ingestion.upload(f"dcr-{workspace.replace('-', '')}", f"Custom-{table}", rows)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_cross_workspace_query_example(
    emulator: Emulator,
    ingestion: LogsIngestionClient,
    http: requests.Session,
    emulator_server: EmulatorServer,
    method: str,
) -> None:
    name = (
        "oms-post-cross-workspace-example.json"
        if method == "POST"
        else "oms-get-cross-workspace-example.json"
    )
    example = load_example(f"{QUERY}/examples/{name}")
    params = example["parameters"]
    load_cross_workspace_state(emulator, ingestion, params["workspaceId"])
    url = f"{emulator_server.endpoint}/v1/workspaces/{params['workspaceId']}/query"
    bearer = {"Authorization": "Bearer t"}

    if method == "POST":
        answer = http.post(url, json=params["body"], headers=bearer)
    else:
        answer = http.get(
            url, params={"query": params["query"], "workspaces": params["workspaces"]}, headers=bearer
        )

    assert answer.status_code == expected_status(example)
    expected = example["responses"]["200"]["body"]
    assert_same_shape(expected, answer.json(), ignore=ROWS)
    assert_rows_match(expected["tables"][0], answer.json()["tables"][0])


# --- errors against the spec's definitions -------------------------------------------------------
def assert_matches_definition(value: Any, definitions: dict[str, Any], name: str, where: str = "$") -> None:
    """Required properties present and typed as the Swagger definition says, nested $refs followed."""
    definition = definitions[name]
    assert isinstance(value, dict), f"{where}: expected an object"
    for required in definition.get("required", []):
        assert required in value, f"{where}.{required}: required by {name}"
    for key, schema in definition.get("properties", {}).items():
        if key not in value:
            continue
        if "$ref" in schema:
            assert_matches_definition(
                value[key], definitions, schema["$ref"].split("/")[-1], f"{where}.{key}"
            )
        elif schema.get("type") == "string":
            assert isinstance(value[key], str), f"{where}.{key}: expected a string"
        elif schema.get("type") == "array":
            assert isinstance(value[key], list), f"{where}.{key}: expected a list"


@pytest.mark.parametrize(
    "query",
    ["completely invalid syntax", "Nope_CL | take 1"],
)
def test_query_errors_match_the_error_response_definition(
    emulator: Emulator, http: requests.Session, emulator_server: EmulatorServer, query: str
) -> None:
    spec = SPECS_ROOT / QUERY / "OperationalInsights.json"
    if not spec.is_file():
        pytest.skip(f"REST spec not found at {spec}")
    definitions = json.loads(Path(spec).read_text(encoding="utf-8"))["definitions"]
    emulator.load_scenario(
        {"monitor": {"workspaces": [{"name": "law", "id": "63613592-b6f7-4c3d-a390-22ba13102111"}]}}
    )

    answer = http.post(
        f"{emulator_server.endpoint}/v1/workspaces/63613592-b6f7-4c3d-a390-22ba13102111/query",
        json={"query": query, "timespan": "PT12H"},
        headers={"Authorization": "Bearer t"},
    )

    assert answer.status_code == 400
    assert_matches_definition(answer.json(), definitions, "errorResponse")
    assert "innererror" in answer.json()["error"]
