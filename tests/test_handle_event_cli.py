"""`python -m backupwarden handle-event` in a child process, its settings pointing at the in-process
emulator (HTTPS) and Azurite: the same path as the functions, to completion, with no queue between.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backupwarden.cli.main import main
from tests.new_vm_fixtures import BACKUP_POST, PROTECT_PUT, WEU_VAULT, NewVmBench

ROOT = Path(__file__).resolve().parents[1]


def handle_event(
    bench: NewVmBench, *args: str, stdin: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupwarden", "handle-event", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **bench.env(**settings)},
        timeout=120,
        check=False,
    )


def json_report(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["vm_id"].rsplit("/", 1)[-1]: o for o in report["outcomes"] if o["vm_id"]}


def test_an_array_in_both_schemas_protects_each_new_vm_once(new_vm_bench: NewVmBench, tmp_path: Path) -> None:
    new_vm_bench.service_takes_its_time()
    first = new_vm_bench.create_vm("web-50")
    new_vm_bench.event_grid.configure({"schema": "cloudevents"})
    second = new_vm_bench.create_vm("web-51", tags={"backupwarden:policy": "EnhancedPolicy"})
    grid_pair, cloud_pair = new_vm_bench.events_for(first), new_vm_bench.events_for(second)
    assert "eventType" in grid_pair[0] and "specversion" in cloud_pair[0]
    storage_write = copy.deepcopy(grid_pair[0])
    storage_write["data"]["operationName"] = "Microsoft.Storage/storageAccounts/write"
    malformed = {**copy.deepcopy(grid_pair[0]), "id": "broken-1", "data": None}
    source = tmp_path / "events.json"
    source.write_text(json.dumps([*grid_pair, *cloud_pair, storage_write, malformed]), encoding="utf-8")

    report = json_report(handle_event(new_vm_bench, str(source), "--output", "json"))

    outcomes = by_name(report)
    assert set(outcomes) == {"web-50", "web-51"}, "the pairs collapse; the storage write is ignored"
    for name, vm in (("web-50", first), ("web-51", second)):
        assert (outcomes[name]["result"], outcomes[name]["vault_id"]) == ("protected", WEU_VAULT.lower())
        assert outcomes[name]["job_id"]
        assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [202]
        assert [e.status for e in new_vm_bench.calls(BACKUP_POST, vm)] == [202]
    assert "policy EnhancedPolicy" in outcomes["web-51"]["reason"]
    [rejected] = [o for o in report["outcomes"] if not o["vm_id"]]
    assert (rejected["result"], rejected["error_code"]) == ("failed", "InvalidEvent")
    assert rejected["reason"] == "rejected event broken-1: event broken-1: 'data' must be an object"
    assert report["dry_run"] is False and report["summary"]["protected"] == 2


def test_dash_reads_stdin_and_dry_run_changes_nothing(new_vm_bench: NewVmBench) -> None:
    vm = new_vm_bench.create_vm("web-52")
    event = new_vm_bench.events_for(vm)[0]

    run = handle_event(new_vm_bench, "-", "--dry-run", stdin=json.dumps(event))  # one event, as the table

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["VM", "RESULT", "REASON"]
    assert lines[1].split()[:2] == ["web-52", "dry_run"]
    assert (
        "would protect in vault rsv-prod-weu, policy DefaultPolicy (the only vault in westeurope)" in lines[1]
    )
    assert "(dry run)" in lines[-1]
    assert not new_vm_bench.changing_writes()
    assert new_vm_bench.ledger_record(vm, "protect") is None


def test_a_file_that_is_not_json_exits_2_with_the_reason(new_vm_bench: NewVmBench, tmp_path: Path) -> None:
    source = tmp_path / "events.json"
    source.write_text('[{"id": "1", ', encoding="utf-8")

    run = handle_event(new_vm_bench, str(source), "--output", "json")

    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(f"error: {source}: not JSON: Expecting")
    assert "Traceback" not in run.stderr
    assert not new_vm_bench.requests()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "can't decode byte 0xff"),
        (None, "No such file or directory"),
        (b"", "not JSON: Expecting value"),
    ],
    ids=["not UTF-8", "missing", "empty"],
)
def test_an_unreadable_file_exits_2_with_the_reason(
    new_vm_bench: NewVmBench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    message: str,
) -> None:
    """The same entry point, called in this process (a child process per case costs seconds)."""
    for name, value in new_vm_bench.env().items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "events.json"
    if content is not None:
        source.write_bytes(content)

    code = main(["handle-event", str(source), "--output", "json"])

    printed = capsys.readouterr()
    assert (code, printed.out) == (2, "")
    assert printed.err.startswith(f"error: {source}: ")
    assert message in printed.err
    assert not new_vm_bench.requests()
