"""infra/ agrees with backupwarden/domain/log_schema.py, read through a real Bicep parser.

pycep-parser (the parser checkov uses) turns a .bicep file into a JSON-like tree. It writes identifiers and
string literals alike as plain strings, so where a value can be a `var` reference (columns, names), a string
naming a variable is read as that variable's value.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES, TABLES, Column, LogTable

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MONITORING = INFRA / "app" / "monitoring.bicep"
WORKSPACE_TABLE = "Microsoft.OperationalInsights/workspaces/tables"
DATA_COLLECTION_RULE = "Microsoft.Insights/dataCollectionRules"

BicepTree = Mapping[str, Any]


def parse_bicep(path: Path) -> BicepTree:
    return BicepParser().parse(file_path=path)


@pytest.fixture(scope="module")
def monitoring() -> BicepTree:
    return parse_bicep(MONITORING)


def _resolved(tree: BicepTree, value: Any) -> Any:
    if isinstance(value, str) and value in tree.get("variables", {}):
        return tree["variables"][value]["value"]
    return value


def _configs_of_type(tree: BicepTree, resource_type: str) -> list[Mapping[str, Any]]:
    return [r["config"] for r in tree.get("resources", {}).values() if r["type"] == resource_type]


def _column_problems(where: str, declared: Any, table: LogTable) -> list[str]:
    if not isinstance(declared, list):
        return [f"{where}: columns are not a list but {declared!r}"]
    names = [column.get("name") for column in declared]
    found = {column.get("name"): column.get("type") for column in declared}
    expected = {column.name: column.type for column in table.columns}
    problems = [f"{where}: column {name} declared more than once" for name in found if names.count(name) > 1]
    for name, kind in expected.items():
        if name not in found:
            problems.append(f"{where}: column {name} ({kind}) missing")
        elif found[name] != kind:
            problems.append(f"{where}: column {name} is {found[name]}, log_schema says {kind}")
    unknown = [name for name in found if name not in expected]
    return problems + [f"{where}: column {name} is not in log_schema" for name in unknown]


def _workspace_table_problems(tree: BicepTree, table: LogTable) -> list[str]:
    where = f"workspace table {table.table}"
    tables = _configs_of_type(tree, WORKSPACE_TABLE)
    declared = [config for config in tables if _resolved(tree, config["name"]) == table.table]
    if len(declared) != 1:
        return [f"{where}: declared {len(declared)} times"]
    schema = declared[0]["properties"]["schema"]
    return _column_problems(where, _resolved(tree, schema.get("columns")), table)


def _stream_problems(rule: Mapping[str, Any], tree: BicepTree, table: LogTable) -> list[str]:
    # Object keys that are not identifiers keep their quotes in pycep's tree.
    declarations = {key.strip("'"): value for key, value in rule.get("streamDeclarations", {}).items()}
    if table.stream not in declarations:
        return [f"data collection rule: stream {table.stream} not declared"]
    columns = _resolved(tree, declarations[table.stream].get("columns"))
    return _column_problems(f"stream {table.stream}", columns, table)


def _data_flow_problems(rule: Mapping[str, Any], tree: BicepTree, table: LogTable) -> list[str]:
    where = f"data flow into {table.table}"
    output_stream = f"Custom-{table.table}"
    flows = [f for f in rule.get("dataFlows", []) if _resolved(tree, f.get("outputStream")) == output_stream]
    if len(flows) != 1:
        return [f"{where}: {len(flows)} data flows have outputStream {output_stream}"]
    flow = flows[0]
    workspaces = {_resolved(tree, d["name"]) for d in rule.get("destinations", {}).get("logAnalytics", [])}
    streams = [_resolved(tree, s) for s in flow.get("streams", [])]
    destinations = [_resolved(tree, d) for d in flow.get("destinations", [])]
    problems = [] if streams == [table.stream] else [f"{where}: reads {streams}, not [{table.stream}]"]
    if not destinations or not set(destinations) <= workspaces:
        problems.append(f"{where}: destinations {destinations} are not the rule's Log Analytics destinations")
    if not flow.get("transformKql"):
        problems.append(f"{where}: no transformKql")
    return problems


def schema_differences(tree: BicepTree, table: LogTable) -> list[str]:
    """Every way the Bicep tree's workspace table, DCR stream and data flow for `table` differ from it."""
    rules = _configs_of_type(tree, DATA_COLLECTION_RULE)
    if len(rules) != 1:
        return [f"{len(rules)} data collection rules declared, expected 1"]
    rule = rules[0]["properties"]
    return (
        _workspace_table_problems(tree, table)
        + _stream_problems(rule, tree, table)
        + _data_flow_problems(rule, tree, table)
    )


def _renamed(table: LogTable, old: str, new: str) -> LogTable:
    columns = tuple(Column(new, c.type) if c.name == old else c for c in table.columns)
    return dataclasses.replace(table, columns=columns)


def _retyped(table: LogTable, name: str, kind: str) -> LogTable:
    columns = tuple(Column(name, kind) if c.name == name else c for c in table.columns)
    return dataclasses.replace(table, columns=columns)


def _accessor_path(value: Any) -> str:
    """`a.b.c` for pycep's nested property_accessor operators; other values as they are."""
    if not isinstance(value, Mapping) or value.get("operator", {}).get("type") != "property_accessor":
        return str(value)
    operands = value["operator"]["operands"]
    return f"{_accessor_path(operands['operand_1'])}.{_accessor_path(operands['operand_2'])}"


@pytest.mark.parametrize(
    "bicep_file", sorted(INFRA.rglob("*.bicep")), ids=lambda path: str(path.relative_to(INFRA))
)
def test_every_bicep_file_parses(bicep_file: Path) -> None:
    tree = parse_bicep(bicep_file)
    declared = [tree.get(part) for part in ("resources", "modules", "outputs")]
    assert any(declared), f"{bicep_file} declares no resource, module or output"


def test_the_monitoring_module_is_among_the_parsed_files() -> None:
    assert MONITORING in set(INFRA.rglob("*.bicep"))


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.table)
def test_table_stream_and_data_flow_match_log_schema(monitoring: BicepTree, table: LogTable) -> None:
    assert schema_differences(monitoring, table) == []


def test_a_renamed_column_is_reported_for_the_table_and_the_stream(monitoring: BicepTree) -> None:
    expected = _renamed(JOB_OUTCOMES, "VmName", "VmDisplayName")
    problems = schema_differences(monitoring, expected)
    assert problems == [
        "workspace table BackupJobOutcomes_CL: column VmDisplayName (string) missing",
        "workspace table BackupJobOutcomes_CL: column VmName is not in log_schema",
        "stream Custom-BackupJobOutcomes: column VmDisplayName (string) missing",
        "stream Custom-BackupJobOutcomes: column VmName is not in log_schema",
    ]


def test_a_changed_type_is_reported(monitoring: BicepTree) -> None:
    problems = schema_differences(monitoring, _retyped(AUTOMATION_ACTIONS, "DryRun", "string"))
    assert problems == [
        "workspace table BackupAutomationActions_CL: column DryRun is boolean, log_schema says string",
        "stream Custom-BackupAutomationActions: column DryRun is boolean, log_schema says string",
    ]


def test_a_data_flow_into_the_wrong_table_is_reported(monitoring: BicepTree) -> None:
    broken = copy.deepcopy(dict(monitoring))
    flows = broken["resources"]["dataCollectionRule"]["config"]["properties"]["dataFlows"]
    flow = next(f for f in flows if f["outputStream"] == "Custom-BackupJobOutcomes_CL")
    flow["outputStream"] = "Custom-BackupJobOutcome_CL"
    assert schema_differences(broken, JOB_OUTCOMES) == [
        "data flow into BackupJobOutcomes_CL: 0 data flows have outputStream Custom-BackupJobOutcomes_CL"
    ]


def test_monitoring_outputs_give_the_app_its_ingestion_and_query_ids(monitoring: BicepTree) -> None:
    outputs = {name: _accessor_path(output["value"]) for name, output in monitoring["outputs"].items()}
    symbols = {name: resource["type"] for name, resource in monitoring["resources"].items()}
    assert outputs["BACKUPWARDEN_DCR_IMMUTABLE_ID"] == "dataCollectionRule.properties.immutableId"
    assert outputs["BACKUPWARDEN_LOGS_INGESTION_ENDPOINT"] == (
        "dataCollectionEndpoint.properties.logsIngestion.endpoint"
    )
    assert outputs["BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID"] == "workspace.properties.customerId"
    assert symbols["dataCollectionRule"] == DATA_COLLECTION_RULE
    assert symbols["dataCollectionEndpoint"] == "Microsoft.Insights/dataCollectionEndpoints"
    assert symbols["workspace"] == "Microsoft.OperationalInsights/workspaces"
    assert all(name == name.upper() for name in outputs), "azd reads outputs in UPPER_SNAKE"


def test_the_rule_is_created_after_the_tables_it_writes_to(monitoring: BicepTree) -> None:
    rule = next(r for r in monitoring["resources"].values() if r["type"] == DATA_COLLECTION_RULE)
    tables = {name for name, r in monitoring["resources"].items() if r["type"] == WORKSPACE_TABLE}
    assert tables and tables <= set(rule["config"].get("dependsOn", []))
