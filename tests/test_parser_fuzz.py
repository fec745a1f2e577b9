"""Every parser answers any input with a value or its own error: the defects found, then a fuzz test per
entry point (the same properties bench/fuzz_parsers.py runs 10,000 times each; docs/reliability.md)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from backupwarden.cli.main import main
from backupwarden.domain.vm_events import InvalidEvent
from backupwarden.flows.new_vm.event_batch import read_events
from backupwarden.flows.new_vm.messages import InvalidNewVmWorkItem, NewVmWorkItem
from backupwarden.flows.outcomes.shipping import MARKER_RETENTION
from backupwarden.flows.remediation.messages import InvalidRemediationWorkItem, RemediationWorkItem
from backupwarden.flows.sweep.messages import InvalidSweepWorkItem, SweepWorkItem
from backupwarden.settings import MAX_JOBS_OVERLAP, Settings, SettingsError, parse_duration
from bench.fuzz_parsers import BIG_INTEGER, ENTRY_POINTS, STORAGE, EntryPoint, refused

DEEP = "[" * 3000
DEEP_OBJECTS = '{"a":' * 3000
BODIES = [DEEP, DEEP_OBJECTS, BIG_INTEGER, f'{{"v": 1, "run_id": {BIG_INTEGER}}}', "[" * 990 + "]" * 990]
WORK_ITEMS: list[tuple[Callable[[str], object], type[Exception]]] = [
    (NewVmWorkItem.from_json, InvalidNewVmWorkItem),
    (SweepWorkItem.from_json, InvalidSweepWorkItem),
    (RemediationWorkItem.from_json, InvalidRemediationWorkItem),
]


# --- the defects --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", BODIES, ids=["deep arrays", "deep objects", "huge int", "huge field", "990 deep"]
)
@pytest.mark.parametrize(("parse", "error"), WORK_ITEMS, ids=["new-vm", "sweep", "remediation"])
def test_a_work_item_too_deep_or_with_a_huge_integer_is_refused_with_its_own_error(
    parse: Callable[[str], object], error: type[Exception], body: str
) -> None:
    with pytest.raises(error):
        parse(body)


@pytest.mark.parametrize("candidate", ["1", '"vm"', "[]", "null"])
def test_a_sweep_candidate_that_is_not_an_object_is_refused(candidate: str) -> None:
    body = f'{{"v": 1, "run_id": "r", "dry_run": false, "candidates": [{candidate}]}}'
    with pytest.raises(InvalidSweepWorkItem, match="a candidate must be an object"):
        SweepWorkItem.from_json(body)


def test_a_sweep_cap_of_infinity_is_refused() -> None:
    with pytest.raises(InvalidSweepWorkItem):
        SweepWorkItem.from_json(
            '{"v": 1, "run_id": "r", "dry_run": false, "candidates": [], "cap": Infinity}'
        )


@pytest.mark.parametrize("body", [DEEP, BIG_INTEGER])
def test_the_cli_event_reader_refuses_deep_or_huge_input(body: str) -> None:
    with pytest.raises(InvalidEvent, match=r"^not JSON this command reads"):
        read_events(body)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BACKUPWARDEN_JOBS_OVERLAP", "999999999d", "longer than 3650d"),
        ("BACKUPWARDEN_JOBS_OVERLAP", "7d", "must be from 0 to 6d, not 7d"),
        ("BACKUPWARDEN_GRACE_PERIOD", "99999999999d", "longer than 3650d"),
        ("BACKUPWARDEN_GRACE_PERIOD", "8d", "must be from 0 to 7d, not 8d"),
        ("BACKUPWARDEN_RETRY_BACKOFF", "9" * 30 + "s", "longer than 3650d"),
        ("BACKUPWARDEN_RETRY_BACKOFF", "25h", "must be from 0 to 1d, not 25h"),
        ("BACKUPWARDEN_VAULT_RULES", "[" * 3000, "not JSON this setting reads"),
        ("BACKUPWARDEN_VAULT_RULES", "[" * 800 + "]" * 800, "rule 1: must be an object"),
        ("BACKUPWARDEN_FAILURE_CLASSES", '{"a":' * 3000, "not JSON this setting reads"),
        ("BACKUPWARDEN_FAILURE_CLASSES", '{"a":' * 800 + "1" + "}" * 800, "class of 'a' must be one of"),
        ("BACKUPWARDEN_FAILURE_CLASSES", f'{{"a": {BIG_INTEGER}}}', "not JSON this setting reads"),
    ],
)
def test_a_duration_or_json_setting_out_of_bounds_fails_naming_the_setting(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**STORAGE, name: value})
    assert str(raised.value).startswith(f"{name}: ")
    assert message in str(raised.value)


def test_the_longest_jobs_overlap_is_read_again_while_its_markers_are_kept() -> None:
    assert MAX_JOBS_OVERLAP + timedelta(days=1) <= MARKER_RETENTION
    assert Settings.from_env({**STORAGE, "BACKUPWARDEN_JOBS_OVERLAP": "6d"}).jobs_overlap == timedelta(days=6)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 */99 * * * *", "minute field: the step in '*/99' must be from 1 to 59"),
        ("*/0 * * * * *", "second field: the step in '*/0' must be from 1 to 59"),
        ("60 * * * * *", "second field: '60' is not in 0-59"),
        ("0 0 24 * * *", "hour field: '24' is not in 0-23"),
        ("0 0 0 0 * *", "day field: '0' is not in 1-31"),
        ("0 0 0 * 13 *", "month field: '13' is not in 1-12 or Jan-Dec"),
        ("0 0 0 * * 7", "day-of-week field: '7' is not in 0-6 or Sun-Sat"),
        ("0 0 0 * * Fri-Mon", "day-of-week field: the range 'Fri-Mon' runs backwards"),
        ("0 0 0 * * Funday", "day-of-week field: 'Funday' is not in 0-6 or Sun-Sat"),
        ("0 0-5-9 * * * *", "minute field: '0-5-9' is not *, a value or a range"),
        ("0 1,,2 * * * *", "minute field: '' is not *, a value or a range"),
    ],
)
def test_an_ncrontab_field_out_of_its_range_fails_naming_the_setting(schedule: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**STORAGE, "SWEEP_SCHEDULE": schedule})
    assert str(raised.value).startswith("SWEEP_SCHEDULE: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 */30 * * * *",
        "0 */5 * * * *",
        "0 0 */2 * * Mon-Fri",
        "0 15 2 1,15 Jan-Jun *",
        "30 5/15 0-23/6 * * 0,6",
    ],
)
def test_valid_ncrontab_expressions_are_accepted(schedule: str) -> None:
    assert Settings.from_env({**STORAGE, "SWEEP_SCHEDULE": schedule}).sweep_schedule == schedule


def test_parse_duration_refuses_what_no_setting_could_take() -> None:
    assert parse_duration("3650d") == timedelta(days=3650)
    for text in ("3651d", "99999999999d", "999999999d99999999h", "1" * 5000 + "s"):
        with pytest.raises(ValueError, match="longer than 3650d"):
            parse_duration(text)


# --- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["handle-event", "remediate"])
@pytest.mark.parametrize("stdin", [DEEP, BIG_INTEGER], ids=["deep", "huge int"])
def test_the_cli_answers_deep_or_huge_stdin_with_one_line_and_exit_2(
    command: str, stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in STORAGE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))

    assert main([command, "-"]) == 2

    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith("error: -: not JSON this command reads")
    assert printed.err.count("\n") == 1, printed.err


@pytest.mark.parametrize("since", ["99999999999d", "731d", "1" * 5000 + "h"])
def test_cli_report_refuses_a_window_too_long_without_a_traceback(
    since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--since", since])

    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "argument --since:" in error and ("at most 730d" in error or "longer than 3650d" in error), error


# --- fuzz: one test per entry point -------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[entry.name for entry in ENTRY_POINTS])
def test_any_input_gives_a_value_or_the_parsers_own_error(entry: EntryPoint) -> None:
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(entry.inputs)
    def property_(value: Any) -> None:
        refused(entry, value)  # raises anything but entry.error

    property_()
