"""Every KQL the project ships, checked by Microsoft's own KQL analyser: zero errors.

The analyser is the Kusto language service (`@kusto/language-service-next`, pinned in package.json,
installed by `npm ci`), run by tests/kql_analyse.mjs in one Node process for all queries. It parses
each query and binds every name against a database schema built here: the custom tables with the
columns backupwarden/domain/log_schema.py declares, plus the standard columns Log Analytics adds to
every table. A misspelt column, a column the table does not declare or a syntax error is an error.

Checked: every file in kql/ (whatever is added), every query the Bicep deploys (alert rules, workbook;
found by evaluating every variable of infra/ that holds a `query`) and the alert rules' KQL as
alert_rules.py names it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from backupwarden.domain.alert_rules import ALERT_RULES
from backupwarden.domain.kql import KQL_DIR, kql_names, load_kql
from backupwarden.domain.log_schema import TABLES
from tests.test_infra import BicepEvaluator, bicep_files, bicep_string, parse_bicep

ROOT = Path(__file__).resolve().parents[1]
ANALYSE = ROOT / "tests" / "kql_analyse.mjs"
ANALYSER = ROOT / "node_modules" / "@kusto" / "language-service-next"

# log_schema.py's (DCR) column types in Kusto's scalar type names.
KUSTO_TYPES = {
    "string": "string",
    "datetime": "datetime",
    "int": "int",
    "long": "long",
    "real": "real",
    "boolean": "bool",
    "dynamic": "dynamic",
}
# Columns Log Analytics adds to every table, custom ones included:
# https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns
STANDARD_COLUMNS = {
    "TenantId": "string",
    "Type": "string",
    "_ItemId": "string",
    "_ResourceId": "string",
    "_SubscriptionId": "string",
    "_TimeReceived": "datetime",
    "_IsBillable": "string",
    "_BilledSize": "real",
}
# Tables of Azure's own a shipped query reads, with their documented columns (none today): a query on a
# table missing here fails with "does not refer to any known table"; add the table with its reference.
STANDARD_TABLES: dict[str, dict[str, str]] = {}


def schema() -> dict[str, dict[str, str]]:
    custom = {
        table.table: {**STANDARD_COLUMNS, **{c.name: KUSTO_TYPES[c.type] for c in table.columns}}
        for table in TABLES
    }
    return {**STANDARD_TABLES, **custom}


def analyse(queries: dict[str, str], tables: dict[str, dict[str, str]] | None = None) -> dict[str, list[Any]]:
    """Each query's diagnostics from the Kusto language service, by query name."""
    node = shutil.which("node")
    assert node, "node is required (make deps)"
    assert ANALYSER.is_dir(), f"{ANALYSER} is missing: run `make node_modules` (npm ci)"
    payload = {
        "tables": schema() if tables is None else tables,
        "queries": [{"name": name, "text": text} for name, text in queries.items()],
    }
    done = subprocess.run(
        [node, str(ANALYSE)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {result["name"]: result["diagnostics"] for result in json.loads(done.stdout)}


def errors_of(diagnostics: list[dict[str, Any]], text: str) -> list[str]:
    """The errors, each with its line and the text it points at."""
    found = []
    for d in diagnostics:
        if d["severity"] == "Error":
            line = text.count("\n", 0, d["start"]) + 1
            at = text[d["start"] : d["start"] + d["length"]]
            found.append(f"line {line}: {d['code']} {d['message']} (at {at!r})")
    return found


# --- what the project ships --------------------------------------------------------------------------
def sample_parameters(path: Path) -> dict[str, Any]:
    """A value for every parameter of the Bicep file, so that any variable can be evaluated."""
    samples = {"string": "sample", "bool": False, "int": 0, "object": {}, "array": []}
    parameters = parse_bicep(path).get("parameters") or {}
    return {name: _allowed(p, default=samples[p["type"]]) for name, p in parameters.items()}


def _allowed(parameter: dict[str, Any], *, default: Any) -> Any:
    """The first value an `@allowed` parameter may take (a sample outside it is refused), else `default`."""
    for decorator in parameter.get("decorators") or []:
        if decorator["type"] == "allowed":
            return decorator["argument"][0]
    return default


def queries_in(value: Any) -> list[str]:
    """Every string under a `query` key, at any depth."""
    if isinstance(value, dict):
        own = [value["query"]] if isinstance(value.get("query"), str) else []
        return own + [q for key, item in value.items() if key != "query" for q in queries_in(item)]
    if isinstance(value, list):
        return [q for item in value for q in queries_in(item)]
    return []


@cache
def deployed_queries() -> dict[str, str]:
    """Every query the Bicep deploys, as ARM receives it, named by file, variable and position."""
    found: dict[str, str] = {}
    for path in bicep_files():
        if "query" not in path.read_text():  # parsing Bicep is slow: skip the files with no query at all
            continue
        variables = parse_bicep(path).get("variables") or {}
        evaluator = BicepEvaluator(path, sample_parameters(path))
        for name, variable in variables.items():
            if "'query':" not in str(variable["value"]):  # pycep's keys: a variable with a `query` key
                continue
            for index, text in enumerate(queries_in(evaluator.variable(name))):
                if bicep_string(text) not in found.values():  # the workbook's items repeat its queries
                    found[f"{path.relative_to(ROOT)}:{name}[{index}]"] = bicep_string(text)
    return found


def shipped_queries() -> dict[str, str]:
    kql = {f"kql/{name}.kql": load_kql(name) for name in kql_names()}
    return {**kql, **deployed_queries()}


def test_every_shipped_query_analyses_without_errors() -> None:
    queries = shipped_queries()

    results = analyse(queries)

    assert set(results) == set(queries)
    problems = {name: errors_of(results[name], text) for name, text in queries.items()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_check_covers_every_kql_file_the_alert_rules_and_the_workbook() -> None:
    queries = shipped_queries()
    files = sorted(path.name for path in KQL_DIR.glob("*.kql"))
    assert files and all(f"kql/{name}" in queries for name in files)
    assert {f"kql/{rule.kql_name}.kql" for rule in ALERT_RULES} <= set(queries)
    deployed = set(deployed_queries().values())
    for rule in ALERT_RULES:  # each rule as deployed: alerts.bicep loads the rule's file
        assert load_kql(rule.kql_name) in deployed, rule.name
    workbook = [name for name in deployed_queries() if name.startswith("infra/app/workbook.bicep:queries[")]
    assert len(workbook) >= 5
    # every KQL file infra/ loads is one of kql/, so the check above analyses it as written
    for path in bicep_files():
        for loaded in re.findall(r"loadTextContent\('([^']+\.kql)'\)", path.read_text()):
            assert (path.parent / loaded).resolve().parent == KQL_DIR, f"{path.name} loads {loaded}"


# --- the check can fail -------------------------------------------------------------------------------
# (query, the error code expected, the text it points at); one Node run for them all.
BAD_QUERIES = {
    "unknown column": ("BackupJobOutcomes_CL | where NoSuchColumn == 'x'", "KS142", "NoSuchColumn"),
    "other table's column": ("BackupJobOutcomes_CL | summarize count() by Result", "KS142", "Result"),
    "misspelt operator": ("BackupJobOutcomes_CL | wher Status == 'Failed'", "KS176", "wher"),
    "wrong type": ("BackupJobOutcomes_CL | where Status > ago(1h)", "KS106", ">"),
    "missing expression": ("BackupJobOutcomes_CL | summarize arg_max(EndTime, *) by", "KS006", ""),
    "undeclared table": ("Heartbeat | take 1", "KS204", "Heartbeat"),
}


@cache
def bad_results() -> dict[str, list[Any]]:
    return analyse({name: query for name, (query, _, _) in BAD_QUERIES.items()})


@pytest.mark.parametrize("case", BAD_QUERIES)
def test_a_query_with_an_unknown_name_or_bad_syntax_is_an_error(case: str) -> None:
    query, code, at = BAD_QUERIES[case]

    errors = [d for d in bad_results()[case] if d["severity"] == "Error"]

    assert (code, at) in [(d["code"], query[d["start"] : d["start"] + d["length"]]) for d in errors], errors
    assert errors_of(bad_results()[case], query)


def test_the_same_query_is_clean_once_the_schema_declares_the_column() -> None:
    query = "{table} | where Status == 'Failed' | project VmId, Status"
    tables = {"Declared_CL": {"Status": "string", "VmId": "string"}, "WithoutVm_CL": {"Status": "string"}}

    results = analyse({table: query.format(table=table) for table in tables}, tables)

    assert results["Declared_CL"] == []
    assert [d["code"] for d in results["WithoutVm_CL"]] == ["KS142"]
