"""`python -m backupwarden remediate FILE|-`: the remediation worker's path without the queue, on alert
payloads taken from the emulator's alert outbox; settings point at the in-process emulator (HTTPS) and
Azurite. A child process where the command line itself matters, `main()` in this process otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backupwarden.cli.main import main
from backupwarden.domain.alert_rules import BACKUP_FAILED
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, remediation_scenario, with_new_alert_id

ROOT = Path(__file__).resolve().parents[1]
API_03 = vm_id_of(PROD, "rg-api", "api-03").lower()


@pytest.fixture
def bench(remediation_bench: RemediationBench) -> RemediationBench:
    """api-03 on a clock starting now (the command reads the wall clock), its backup failed and alerted."""
    remediation_bench.load(remediation_scenario("api-03", wall_clock=True))
    return remediation_bench


def remediate(
    bench: RemediationBench, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupwarden", "remediate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **bench.env()},
        timeout=120,
        check=False,
    )


def test_a_payload_file_from_the_alert_outbox_is_remediated(bench: RemediationBench, tmp_path: Path) -> None:
    source = tmp_path / "alert.json"
    source.write_text(json.dumps(bench.failure_alert(API_03)), encoding="utf-8")

    run = remediate(bench, str(source), "--output", "json")

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    [outcome] = report["outcomes"]
    assert (outcome["vm_id"], outcome["action"], outcome["result"], outcome["error_code"]) == (
        API_03,
        "remediate",
        "triggered",
        "BackUpOperationFailed",
    )
    assert outcome["reason"] == f"BackUpOperationFailed: retry, retry 1; backup job {outcome['job_id']}"
    assert (report["dry_run"], report["summary"]["candidates"], report["summary"]["triggered"]) == (
        False,
        1,
        1,
    )
    assert bench.backup_posts_per_vm()["api-03"] == 2, "the failed backup and the retry"
    assert bench.job(outcome["job_id"])["properties"]["status"] == "InProgress"
    bench.ship()
    [record] = bench.actions("Cli")
    assert (record["VmId"], record["Result"], record["JobId"], record["DryRun"]) == (
        API_03,
        "triggered",
        outcome["job_id"],
        False,
    )


def test_dash_reads_stdin_and_dry_run_sends_no_write(bench: RemediationBench) -> None:
    payload = bench.failure_alert(API_03)
    writes = len(bench.changing_writes())

    run = remediate(bench, "-", "--dry-run", stdin=json.dumps(payload))  # as the table

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["VM", "RESULT", "REASON"]
    assert lines[1].split()[:2] == ["api-03", "dry_run"]
    assert "would retry: BackUpOperationFailed: retry, retry 1" in lines[1]
    assert "(dry run)" in lines[-1]
    assert len(bench.changing_writes()) == writes, "no write reached Azure"
    assert bench.backup_posts_per_vm()["api-03"] == 1
    ledger = bench.clients(bench.settings()).ledger_table()
    assert list(ledger.list_entities()) == [], "no claim, no retry counted"


def test_every_decision_of_a_run_is_recorded(
    bench: RemediationBench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fired, resolved and another team's alert in one file: three decisions, three records."""
    fired = bench.failure_alert(API_03)
    bench.emulator.advance(BACKUP_FAILED.window.total_seconds())
    bench.evaluate()
    [resolved] = bench.notifications(BACKUP_FAILED.name, condition="Resolved")
    foreign = with_new_alert_id(fired)
    foreign["data"]["essentials"]["alertRule"] = "contoso-cpu-high"
    source = tmp_path / "alerts.json"
    source.write_text(json.dumps([fired, resolved, foreign]), encoding="utf-8")

    code = main(["remediate", str(source), "--output", "json"])

    printed = capsys.readouterr()
    assert code == 0, printed.err
    outcomes = json.loads(printed.out)["outcomes"]
    assert [(o["vm_id"], o["result"]) for o in outcomes] == [
        (API_03, "triggered"),
        ("", "skipped"),
        ("", "escalated"),
    ]
    assert (
        outcomes[1]["reason"] == f"alert {resolved['data']['essentials']['alertId']} resolved: recorded only"
    )
    assert outcomes[2]["reason"] == "alert rule 'contoso-cpu-high' is not ours"
    bench.ship()
    recorded = sorted((r["VmId"], r["Result"], r["Reason"], r["DryRun"]) for r in bench.actions("Cli"))
    assert recorded == sorted((o["vm_id"], o["result"], o["reason"], False) for o in outcomes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"schemaId": ', "not JSON: Expecting value at line 1"),
        (b"", "not JSON: Expecting value at line 1"),
        (b'{"schemaId": "AzureMonitorMetricAlert"}', "schemaId must be 'azureMonitorCommonAlertSchema'"),
        (b"[1]", "the body must be a JSON object in the common alert schema"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"1" * 5_000, "not JSON"),
        (None, "No such file or directory"),
    ],
    ids=["truncated", "empty", "wrong-schema", "not-an-object", "nested", "huge-number", "missing"],
)
def test_a_malformed_file_exits_2_with_the_reason(
    bench: RemediationBench,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    message: str,
) -> None:
    source = tmp_path / "alert.json"
    if content is not None:
        source.write_bytes(content)

    code = main(["remediate", str(source), "--output", "json"])

    printed = capsys.readouterr()
    assert (code, printed.out) == (2, "")
    assert printed.err.startswith(f"error: {source}: ")
    assert message in printed.err
    assert "Traceback" not in printed.err
    assert bench.requests() == []


def test_a_missing_workspace_id_exits_2_naming_the_setting(
    bench: RemediationBench,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "alert.json"
    source.write_text(json.dumps(bench.failure_alert(API_03)), encoding="utf-8")
    before = len(bench.requests())
    monkeypatch.delenv("BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID")

    code = main(["remediate", str(source)])

    printed = capsys.readouterr()
    assert (code, printed.out) == (2, "")
    assert printed.err.startswith("error: BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: missing")
    assert len(bench.requests()) == before
