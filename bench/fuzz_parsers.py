"""Every parser under fuzzing: any input gives a value or the parser's own error, never another exception.

`.venv/bin/python -m bench.fuzz_parsers [--examples 10000] [--seed 0]` (docs/reliability.md)

The entry points are the ones untrusted or hand-written text reaches: the three queue work items,
Event Grid events, alert notifications (the webhook's body and the CLI's file or stdin), the CLI's
event file, every family of settings, and durations. Each gets text and JSON-ish input: arbitrary
text, JSON values of any shape, the entry point's own shape with arbitrary values, nesting deeper
than the interpreter's recursion limit, and integers longer than Python converts (4,300 digits).

tests/test_parser_fuzz.py runs the same properties with a few hundred examples each; this script runs
`--examples` per entry point and prints a table, then one JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from backupwarden.domain.alerts import COMMON_SCHEMA, InvalidAlert, read_alert
from backupwarden.domain.text_table import text_table
from backupwarden.domain.vm_events import WRITE_SUCCESS, InvalidEvent, read_vm_write
from backupwarden.flows.new_vm.event_batch import read_events
from backupwarden.flows.new_vm.messages import InvalidNewVmWorkItem, NewVmWorkItem
from backupwarden.flows.remediation.intake import read_alert_body
from backupwarden.flows.remediation.messages import FIELDS, InvalidRemediationWorkItem, RemediationWorkItem
from backupwarden.flows.remediation.worker import read_alerts
from backupwarden.flows.sweep.messages import InvalidSweepWorkItem, SweepWorkItem
from backupwarden.settings import Settings, SettingsError, parse_duration

BIG_INTEGER = "9" * 5000  # past int()'s 4,300-digit limit
STORAGE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}

# --- input strategies --------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "Fired", "Resolved", WRITE_SUCCESS, "2026-01-01T00:00:00Z", "/subscriptions/x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """Nesting around the recursion limit: some parses fail in json, some just after it."""
    depth = draw(st.integers(min_value=900, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"data":', "}")]))
    closed = draw(st.booleans())
    return opener * depth + "1" + (closer * depth if closed else "")


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def json_texts(shape: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[str]:
    """Text a parser of JSON meets: any text, any JSON, `shape` as JSON, deep nesting, huge integers."""
    strategies = [
        st.text(max_size=200),
        json_values.map(_dumps),
        deeply_nested(),
        st.sampled_from([BIG_INTEGER, f"[{BIG_INTEGER}]", f'{{"a": {BIG_INTEGER}}}', "NaN", "-Infinity"]),
    ]
    if shape is not None:
        strategies.append(shape.map(_dumps))
        strategies.append(shape.map(lambda value: _dumps(value).replace("1", BIG_INTEGER, 1)))
    return st.one_of(strategies)


def _objects_with(keys: list[str], fixed: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """An object holding some of `keys`, each with any JSON value, plus `fixed`."""
    return st.fixed_dictionaries({}, optional={key: json_values for key in keys}).map(
        lambda raw: {**raw, **(fixed or {})}
    )


SUB = "11111111-1111-4111-8111-111111111111"
VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-1"
VALID_NEW_VM = {
    "vm_id": VM_ID.lower(),
    "subscription_id": SUB,
    "resource_group": "rg-web",
    "vm_name": "web-1",
    "event_id": "e1",
    "correlation_id": "c1",
    "provisioning_waits": 0,
}
VALID_CANDIDATE = {
    "subscription_id": SUB,
    "vault_id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/rsv",
    "container_name": "iaasvmcontainerv2;rg-web;web-1",
    "item_name": "vm;iaasvmcontainerv2;rg-web;web-1",
    "vm_id": VM_ID,
    "vm_name": "web-1",
    "configured_at": "2026-01-01T00:00:00+00:00",
    "vm_tags": {"env": "prod"},
    "job_in_progress": False,
}
VALID_SWEEP = {"v": 1, "run_id": "r1", "dry_run": False, "cap": None, "candidates": [VALID_CANDIDATE]}
VALID_REMEDIATION = {
    "alert_id": "a1",
    "rule": "rule",
    "monitoring_service": "Log Alerts V2",
    "fired_at": "2026-01-01T00:00:00Z",
    "window_start": "2026-01-01T00:00:00Z",
    "window_end": "2026-01-01T01:00:00Z",
    "dimensions": [{"name": "VmId", "value": VM_ID}],
    "target_ids": [VM_ID],
}
VALID_EVENT = {
    "id": "e1",
    "eventType": WRITE_SUCCESS,
    "data": {
        "operationName": "Microsoft.Compute/virtualMachines/write",
        "resourceUri": VM_ID,
        "correlationId": "c",
    },
}
VALID_ALERT = {
    "schemaId": COMMON_SCHEMA,
    "data": {
        "essentials": {
            "alertId": "a1",
            "alertRule": "rule",
            "monitoringService": "Log Alerts V2",
            "monitorCondition": "Fired",
            "firedDateTime": "2026-01-01T00:00:00Z",
            "alertTargetIDs": [VM_ID],
        },
        "alertContext": {
            "condition": {
                "windowStartTime": "2026-01-01T00:00:00Z",
                "windowEndTime": "2026-01-01T01:00:00Z",
                "allOf": [{"dimensions": [{"name": "VmId", "value": VM_ID}]}],
            }
        },
    },
}


def mutations(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`valid` itself, or with one of its keys, at any depth, dropped or given any JSON value."""
    paths = list(_paths(valid))

    def mutate(path: tuple[str, ...], replacement: Any, drop: bool) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(valid))
        parent = copy
        for key in path[:-1]:
            parent = parent[key]
        if drop:
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
        return copy

    return st.just(valid) | st.builds(mutate, st.sampled_from(paths), json_values, st.booleans())


def _paths(value: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, inner in value.items():
        paths.append((*prefix, key))
        if isinstance(inner, dict):
            paths.extend(_paths(inner, (*prefix, key)))
    return paths


new_vm_shape = mutations(VALID_NEW_VM) | _objects_with(
    [
        "vm_id",
        "subscription_id",
        "resource_group",
        "vm_name",
        "event_id",
        "correlation_id",
        "provisioning_waits",
    ]
)
candidate_shape = _objects_with(
    [
        "subscription_id",
        "vault_id",
        "container_name",
        "item_name",
        "vm_id",
        "vm_name",
        "configured_at",
        "vm_tags",
        "job_in_progress",
    ]
)
sweep_shape = mutations(VALID_SWEEP) | st.fixed_dictionaries(
    {"v": st.just(1)},
    optional={
        "run_id": json_values,
        "dry_run": json_values,
        "cap": json_values,
        "candidates": st.lists(candidate_shape | json_values, max_size=3) | json_values,
    },
)
remediation_shape = mutations(VALID_REMEDIATION) | _objects_with(list(FIELDS))
event_shape = mutations(VALID_EVENT) | st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=8) | json_values},
    optional={
        "eventType": st.just(WRITE_SUCCESS) | json_values,
        "type": json_values,
        "data": _objects_with(["operationName", "resourceUri", "correlationId"]).map(
            lambda d: {"operationName": "Microsoft.Compute/virtualMachines/write", **d}
        )
        | json_values,
    },
)
alert_shape = mutations(VALID_ALERT) | st.fixed_dictionaries(
    {
        "schemaId": st.just(COMMON_SCHEMA),
        "data": st.fixed_dictionaries(
            {
                "essentials": _objects_with(
                    ["alertId", "alertRule", "firedDateTime", "alertTargetIDs"],
                    {"monitoringService": "Log Alerts V2"},
                ).map(lambda e: {"monitorCondition": "Fired", **e})
            },
            optional={
                "alertContext": st.fixed_dictionaries(
                    {},
                    optional={
                        "condition": _objects_with(["windowStartTime", "windowEndTime", "allOf"])
                        | json_values
                    },
                )
                | json_values
            },
        ),
    }
)
durations = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A([0-9]{1,40}d)?([0-9]{1,40}h)?([0-9]{1,40}m)?([0-9]{1,40}s)?\Z"),
)
ncrontab_fields = st.one_of(
    st.sampled_from(["*", "0", "59", "60", "*/5", "*/99", "1-5", "5-1", "Mon-Fri", "Jan", "7", "0/0", ""]),
    st.from_regex(r"\A[0-9*A-Za-z]{1,3}(-[0-9A-Za-z]{1,3})?(/[0-9]{1,4})?(,[0-9]{1,3})?\Z"),
    st.text(max_size=6),
)
ncrontabs = st.one_of(st.lists(ncrontab_fields, min_size=5, max_size=7).map(" ".join), st.text(max_size=40))
numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from([BIG_INTEGER, "1e999", "-0", "0x10", "1_000", "250/25", "1/0", "nan/nan"]),
    st.text(max_size=20),
)
json_settings = st.one_of(
    json_texts(st.lists(_objects_with(["vault", "policy", "subscription", "tag", "tag_value"]), max_size=3)),
    json_texts(st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
)

SETTING_FAMILIES: dict[str, tuple[tuple[str, ...], st.SearchStrategy[str]]] = {
    "durations": (
        ("BACKUPWARDEN_GRACE_PERIOD", "BACKUPWARDEN_JOBS_OVERLAP", "BACKUPWARDEN_RETRY_BACKOFF"),
        durations,
    ),
    "numbers": (
        (
            "BACKUPWARDEN_DAILY_BUDGET",
            "BACKUPWARDEN_MAX_TRIGGERS_PER_RUN",
            "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S",
            "BACKUPWARDEN_RETRY_CAP",
            "BACKUPWARDEN_ARM_READ_BUCKET",
        ),
        numbers,
    ),
    "json": (("BACKUPWARDEN_VAULT_RULES", "BACKUPWARDEN_FAILURE_CLASSES"), json_settings),
    "ncrontab": (("SWEEP_SCHEDULE", "OUTCOMES_SCHEDULE"), ncrontabs),
    "names and ids": (
        (
            "BACKUPWARDEN_SUBSCRIPTIONS",
            "BACKUPWARDEN_ARM_ENDPOINT",
            "BACKUPWARDEN_LEDGER_TABLE",
            "BACKUPWARDEN_PROTECT_QUEUE",
            "BACKUPWARDEN_DCR_IMMUTABLE_ID",
            "BACKUPWARDEN_DISCOVERY",
            "AzureWebJobsStorage",
        ),
        st.text(max_size=60),
    ),
}

# --- the entry points ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPoint:
    """A parser, the input it is fuzzed with, and the one error type it may answer with."""

    name: str
    inputs: st.SearchStrategy[Any]
    parse: Callable[[Any], object]
    error: type[Exception]


def _setting_family(
    names: tuple[str, ...], values: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(lambda name, value: {**STORAGE, name: value}, st.sampled_from(names), values)


ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint(
        "NewVmWorkItem.from_json", json_texts(new_vm_shape), NewVmWorkItem.from_json, InvalidNewVmWorkItem
    ),
    EntryPoint(
        "SweepWorkItem.from_json", json_texts(sweep_shape), SweepWorkItem.from_json, InvalidSweepWorkItem
    ),
    EntryPoint(
        "RemediationWorkItem.from_json",
        json_texts(remediation_shape),
        RemediationWorkItem.from_json,
        InvalidRemediationWorkItem,
    ),
    EntryPoint("read_vm_write", event_shape | json_values, read_vm_write, InvalidEvent),
    EntryPoint("read_events (CLI handle-event)", json_texts(event_shape), read_events, InvalidEvent),
    EntryPoint("read_alert", alert_shape | json_values, read_alert, InvalidAlert),
    EntryPoint(
        "read_alert_body (webhook)",
        json_texts(alert_shape).map(lambda text: text.encode("utf-8", "surrogatepass"))
        | st.binary(max_size=64),
        read_alert_body,
        InvalidAlert,
    ),
    EntryPoint("read_alerts (CLI remediate)", json_texts(alert_shape), read_alerts, InvalidAlert),
    *(
        EntryPoint(
            f"Settings.from_env: {family}", _setting_family(names, values), Settings.from_env, SettingsError
        )
        for family, (names, values) in SETTING_FAMILIES.items()
    ),
    EntryPoint("parse_duration", durations, parse_duration, ValueError),
)


def refused(entry: EntryPoint, value: Any) -> bool:
    """Parse one input: False for a value, True for the parser's own error; anything else propagates."""
    try:
        entry.parse(value)
    except entry.error:
        return True
    return False


@dataclass
class Tally:
    examples: int = 0
    errors: int = 0  # the parser's own error: the input was refused with a reason
    unexpected: list[str] = field(default_factory=list)


def run(entry: EntryPoint, examples: int, seed_value: int) -> tuple[Tally, float]:
    """`examples` inputs through `entry`, every one counted; an unexpected exception is noted, not raised."""
    tally = Tally()

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(entry.inputs)
    def property_(value: Any) -> None:
        tally.examples += 1
        try:
            tally.errors += refused(entry, value)
        except Exception as exc:
            tally.unexpected.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    started = time.perf_counter()
    property_()
    return tally, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=10_000, help="examples per entry point (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(1000)  # the interpreter's default, as in the Functions host
    rows = [("ENTRY POINT", "EXAMPLES", "ERRORS ACCEPTED", "UNEXPECTED", "SECONDS")]
    figures: dict[str, Any] = {
        "examples_per_entry_point": args.examples,
        "seed": args.seed,
        "entry_points": {},
    }
    for entry in ENTRY_POINTS:
        tally, seconds = run(entry, args.examples, args.seed)
        unexpected = tally.unexpected
        rows.append(
            (entry.name, str(tally.examples), str(tally.errors), str(len(unexpected)), f"{seconds:.1f}")
        )
        figures["entry_points"][entry.name] = {
            "examples": tally.examples,
            "errors_accepted": tally.errors,
            "unexpected": len(unexpected),
            "first_unexpected": unexpected[0] if unexpected else None,
            "seconds": round(seconds, 2),
        }
    print(text_table(rows))
    total_unexpected = sum(e["unexpected"] for e in figures["entry_points"].values())
    figures["unexpected_total"] = total_unexpected
    print(json.dumps(figures, sort_keys=True))
    return 1 if total_unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
