"""Alert-driven remediation through the real SDK clients against the emulator and Azurite.

The loop as the demo runs it: the sweep's backups fail → job outcomes shipped to the workspace → the
emulator's evaluator runs the rule KQL and POSTs to `alert_webhook` → work items on the queue → the
remediation worker retries, caps or escalates → its decisions shipped as BackupAutomationActions_CL.
The clock stands still between `advance()` calls, so windows and backoffs are exact.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.alert_rules import (
    ALERT_RULES,
    AUTOMATION_SILENT,
    BACKUP_FAILED,
    STILL_UNPROTECTED,
    AlertRuleDefinition,
)
from backupwarden.domain.alerts import read_alert
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.remediation.messages import RemediationWorkItem
from emulator.core.realism import Fault
from tests.alert_webhook_fixtures import handlers_fixture  # noqa: F401
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import (
    QueryLog,
    RemediationBench,
    dimensions,
    remediation_scenario,
    serving,
    with_new_alert_id,
)
from tests.sweep_fixtures import by_vm_name, vm_name

ROOT = Path(__file__).resolve().parents[1]
Functions = dict[str, Callable[..., Any]]  # the functions function_app registers, by name
RETRY_CAP = 1  # BACKUPWARDEN_RETRY_CAP (the default is 2)
API_03 = vm_id_of(PROD, "rg-api", "api-03").lower()
DB_02 = vm_id_of(PROD, "rg-db", "db-02").lower()
NO_FAILURE = "no failure in the alert's window any more"


def rule_kql(kql_name: str) -> str:
    """The rule's query as the file holds it (read here, not through the app's loader)."""
    return (ROOT / "kql" / f"{kql_name}.kql").read_text(encoding="utf-8")


def summary(outcomes: list[Outcome]) -> dict[str, tuple[Result, str]]:
    return {name: (o.result, o.reason) for name, o in by_vm_name(outcomes).items()}


def without_vm(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.vm_id]


@pytest.fixture
def loop(remediation_bench: RemediationBench, handlers: Functions) -> Iterator[RemediationBench]:
    """The bench with every alert rule POSTing to `alert_webhook`, served on loopback."""
    remediation_bench.load(remediation_scenario())  # api-03, db-02, pay-01, dev-04 and web-01
    with serving(handlers["alert_webhook"]) as host:
        remediation_bench.add_rules(host.url)
        yield remediation_bench
        remediation_bench.monitor.wait_for_deliveries(timeout_s=30)  # before the webhook goes away


# --- the loop ------------------------------------------------------------------------------------
def test_the_loop_retries_what_a_retry_fixes_caps_the_agent_and_escalates_the_rest(
    loop: RemediationBench,
) -> None:
    loop.sweep_and_record()
    loop.advance_past_jobs()
    worker = loop.remediation(BACKUPWARDEN_RETRY_CAP=str(RETRY_CAP))

    rounds: list[list[Outcome]] = []
    for _ in range(RETRY_CAP + 1):  # ship → evaluate → webhook → queue → remediate → jobs end
        loop.ship()
        loop.evaluate()
        rounds.append(loop.drain(worker))
        loop.advance_past_jobs()

    first, *later = rounds
    per_vm = summary(first)
    assert set(per_vm) == {"api-03", "db-02", "pay-01", "dev-04"}, "web-01's backup succeeded: no alert"
    assert per_vm["api-03"][0] is Result.TRIGGERED
    assert per_vm["api-03"][1].startswith("BackUpOperationFailed: retry, retry 1; backup job ")
    assert per_vm["db-02"][0] is Result.TRIGGERED
    assert per_vm["db-02"][1].startswith("UserErrorGuestAgentStatusUnavailable: retry_capped, retry 1;")
    assert per_vm["pay-01"][0] is Result.ESCALATED
    assert per_vm["pay-01"][1].startswith(
        "UserErrorRequestDisallowedByPolicy: configuration blocks the backup: "
    )
    assert per_vm["dev-04"][0] is Result.ESCALATED
    assert per_vm["dev-04"][1].startswith("UserErrorVmNotFoundV2: a retry cannot fix it: ")
    agent = "UserErrorGuestAgentStatusUnavailable"
    db_02 = [by_vm_name(outcomes).get("db-02") for outcomes in rounds]
    assert [(o.result, o.reason.split(";")[0]) if o else None for o in db_02] == [
        *[(Result.TRIGGERED, f"{agent}: retry_capped, retry {n}") for n in range(1, RETRY_CAP + 1)],
        (
            Result.ESCALATED,
            f"{agent}: still failing after {RETRY_CAP} retries: "
            "Ensure the VM agent is installed, up to date and running, then retry the operation.",
        ),
    ]
    assert {vm for outcomes in later for vm in by_vm_name(outcomes)} == {"db-02"}, "one alert per failure"

    posts = loop.backup_posts_per_vm()  # the sweep's one each, then remediation's
    assert (posts["api-03"], posts["db-02"], posts["pay-01"], posts["dev-04"]) == (2, 1 + RETRY_CAP, 1, 1)

    retried = by_vm_name(first)["api-03"]
    assert retried.job_id
    assert loop.job(retried.job_id)["properties"]["status"] == "Completed"
    item = loop.protected_item(API_03)["properties"]
    assert (item["protectionState"], item["lastBackupStatus"]) == ("Protected", "Completed")

    everything = [o for outcomes in rounds for o in outcomes]
    failed_rows = [r for r in loop.landed(JOB_OUTCOMES.table) if r["Status"] == "Failed"]
    for outcome in everything:
        if outcome.result is Result.ESCALATED and outcome.vm_id:
            [advice] = {r["Recommendation"] for r in failed_rows if r["VmId"] == outcome.vm_id}
            assert advice and outcome.reason.endswith(f": {advice}"), outcome
    # no VM: only alerts of the rules that do not remediate, escalated as they are: the dead man's
    # switches (the sweep ran once; the loop ships without the run records `ship_outcomes` adds) and
    # the automation's own problems (pay-01's and dev-04's escalations)
    not_remediating = {f"{rule.name}: {rule.description}" for rule in ALERT_RULES if not rule.remediates}
    no_vm = without_vm(everything)
    assert [o for o in no_vm if o.result is not Result.ESCALATED or o.reason not in not_remediating] == []
    assert f"{AUTOMATION_SILENT.name}: {AUTOMATION_SILENT.description}" in {o.reason for o in everything}

    loop.ship()
    recorded = sorted(
        (r["RunId"], r["VmId"], r["Result"], r["Reason"], r["JobId"], r["ErrorCode"], r["DryRun"])
        for r in loop.actions("Alert")
    )
    assert recorded == sorted(
        (o.run_id, o.vm_id, o.result.value, o.reason, o.job_id or "", o.error_code or "", False)
        for o in everything
    )


# --- duplicates and repeats ----------------------------------------------------------------------
def test_five_deliveries_of_one_alert_remediate_once(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    bench = remediation_bench
    payload = bench.failure_alert(API_03)

    statuses = [bench.deliver(handlers["alert_webhook"], payload) for _ in range(5)]
    outcomes = bench.drain()

    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert [(vm_name(o.vm_id), o.result) for o in outcomes] == [("api-03", Result.TRIGGERED)]
    assert bench.backup_posts_per_vm()["api-03"] == 2, "the failed backup and one retry"


def test_repeated_alerts_for_one_failed_job_do_not_stack_retries(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    """Another alert (another alertId) over the same failed job, after the backoff, while the retry still
    runs: that failed job was remediated once, so no second retry."""
    bench = remediation_bench
    payload = bench.failure_alert(API_03)
    worker = bench.remediation()
    bench.deliver(handlers["alert_webhook"], payload)
    [first] = bench.drain(worker)
    bench.emulator.advance(bench.settings().retry_backoff.total_seconds() + 60)  # the retry's job runs
    again = bench.deliver(handlers["alert_webhook"], with_new_alert_id(payload))

    [second] = bench.drain(worker)

    assert again == "accepted"
    [failed_job] = [r["JobId"] for r in bench.landed(JOB_OUTCOMES.table) if r["Status"] == "Failed"]
    assert first.result is Result.TRIGGERED
    assert (second.vm_id, second.result, second.reason) == (
        API_03,
        Result.SKIPPED,
        f"failed job {failed_job} already remediated",
    )
    assert bench.backup_posts_per_vm()["api-03"] == 2


def test_a_retry_the_service_refused_leaves_the_failed_job_to_a_later_alert(
    remediation_bench: RemediationBench,
) -> None:
    """The trigger answered 503 (no client retries): nothing was retried, so the next delivery of the
    same alert still may retry that failed job."""
    bench = remediation_bench
    item = RemediationWorkItem.from_notice(read_alert(bench.failure_alert(API_03)))
    worker = bench.remediation(BACKUPWARDEN_HTTP_RETRY_TOTAL="0")
    bench.emulator.faults.add(Fault(r"/protectedItems/[^/]+/backup$", 503, method="POST", remaining=1))

    [refused] = worker.handle_item(item)
    [retried] = worker.handle_item(item)  # the queue's redelivery, or the same alert once more

    assert (refused.result, refused.reason.rsplit("; ", 1)[-1]) == (Result.FAILED, "trigger backup failed")
    assert retried.result is Result.TRIGGERED, retried
    assert retried.reason.startswith("BackUpOperationFailed: retry, retry 1; backup job ")
    assert bench.backup_posts_per_vm()["api-03"] == 3, "the failed backup, the refused and the retry"


# --- when not to retry ---------------------------------------------------------------------------
def test_a_later_success_resolves_the_failure_without_a_retry(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    """Microsoft's runbook retries every failed job it finds; a backup that completed after the failure
    makes the failure moot."""
    bench = remediation_bench
    payload = bench.failure_alert(API_03)
    bench.backup_now(API_03)  # someone's, which completes (api-03 fails only once)
    bench.advance_past_jobs()
    bench.deliver(handlers["alert_webhook"], payload)

    [outcome] = bench.drain()

    properties = bench.protected_item(API_03)["properties"]
    assert properties["lastBackupStatus"] == "Completed"
    assert (outcome.vm_id, outcome.result) == (API_03, Result.RESOLVED)
    assert outcome.reason.startswith("a later backup succeeded at ")
    assert bench.backup_posts_per_vm()["api-03"] == 2, "the failed one and the later one: no retry"


def test_a_second_failure_within_the_backoff_is_a_no_op(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("db-02"))  # its agent fails every backup
    worker = bench.remediation(BACKUPWARDEN_RETRY_BACKOFF="2h")
    bench.deliver(handlers["alert_webhook"], bench.failure_alert(DB_02))
    retried_at = bench.emulator.now()
    [first] = bench.drain(worker)
    bench.advance_past_jobs()  # 42 minutes: the retry failed too
    bench.ship()
    bench.evaluate()
    [_, second_alert] = bench.notifications(BACKUP_FAILED.name, vm="db-02")
    bench.deliver(handlers["alert_webhook"], second_alert)

    [second] = bench.drain(worker)

    assert first.result is Result.TRIGGERED
    until = retried_at + timedelta(hours=2)
    assert (second.result, second.reason) == (Result.SKIPPED, f"backing off until {until:%Y-%m-%dT%H:%MZ}")
    assert bench.backup_posts_per_vm()["db-02"] == 2, "the failed backup and the first retry"


def test_a_resolved_alert_is_recorded_and_not_acted_on(
    remediation_bench: RemediationBench, handlers: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    bench.failure_alert(API_03)
    bench.emulator.advance(BACKUP_FAILED.window.total_seconds())  # the failure left the rule's window
    bench.evaluate()
    [resolved] = bench.notifications(BACKUP_FAILED.name, condition="Resolved", vm="api-03")
    log = QueryLog()
    log.install(monkeypatch)

    status = bench.deliver(handlers["alert_webhook"], resolved)
    outcomes = bench.remediation().handle(read_alert(resolved))  # the CLI's path takes any alert

    assert status == "recorded"
    assert bench.work_items() == []
    alert_id = resolved["data"]["essentials"]["alertId"]
    assert [(o.vm_id, o.result, o.reason) for o in outcomes] == [
        ("", Result.SKIPPED, f"alert {alert_id} resolved: recorded only")
    ]
    assert log.texts == [], "nothing queried"
    assert bench.backup_posts_per_vm()["api-03"] == 1


def test_an_alert_of_an_unknown_rule_is_escalated(
    remediation_bench: RemediationBench, handlers: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    payload = copy.deepcopy(bench.failure_alert(API_03))
    payload["data"]["essentials"]["alertRule"] = "contoso-cpu-high"
    log = QueryLog()
    log.install(monkeypatch)
    bench.deliver(handlers["alert_webhook"], payload)

    outcomes = bench.drain()

    assert [(o.vm_id, o.result, o.reason) for o in outcomes] == [
        ("", Result.ESCALATED, "alert rule 'contoso-cpu-high' is not ours")
    ]
    assert log.texts == []
    assert bench.backup_posts_per_vm()["api-03"] == 1


def test_the_automation_silent_alert_is_escalated_without_a_vm(
    remediation_bench: RemediationBench, handlers: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = remediation_bench
    log = QueryLog()
    log.install(monkeypatch)
    with serving(handlers["alert_webhook"]) as host:
        bench.add_rules(host.url, AUTOMATION_SILENT)
        bench.evaluate()  # no sweep ran: no heartbeat in the last hour
    [payload] = bench.notifications(AUTOMATION_SILENT.name)

    outcomes = bench.drain()

    assert dimensions(payload) == {}
    assert [(o.vm_id, o.vault_id, o.result, o.reason) for o in outcomes] == [
        ("", "", Result.ESCALATED, f"{AUTOMATION_SILENT.name}: {AUTOMATION_SILENT.description}")
    ]
    assert log.texts == []
    assert bench.backup_posts() == []
    bench.ship()
    assert [(r["Result"], r["VmId"]) for r in bench.actions("Alert")] == [("escalated", "")]


# --- values from payloads never become KQL -------------------------------------------------------
HOSTILE_VALUES = (
    '"; BackupJobOutcomes_CL | take 1000 //',
    "x' or '1'=='1",
    f'{API_03}" or VmId != "',
    f"{API_03}\n| union BackupAutomationActions_CL",
    "| where Status == 'Completed' | project *",
    "let x = 1; print x",
    'evaluate bag_unpack(x) | extend \\" = "\\\\"',
    "\r\n\t| summarize count() by VmId\u2028",
)
KQL_PIECES = [*"\"'|\\\n\r;`$(){}[]=!<>~ *-/x", "and ", "or ", "where ", "union ", "//", "\u2028"]
KQLISH = st.lists(st.sampled_from(KQL_PIECES), max_size=12).map("".join)


def test_dimension_values_never_reach_the_query(
    remediation_bench: RemediationBench, handlers: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed row is in each alert's window, so a query built from the values would find it."""
    bench = remediation_bench
    payload = bench.failure_alert(API_03)
    log = QueryLog()
    log.install(monkeypatch)
    for value in HOSTILE_VALUES:
        hostile = with_new_alert_id(payload)
        [criterion] = hostile["data"]["alertContext"]["condition"]["allOf"]
        criterion["dimensions"] = [{"name": "VmId", "value": value}, {"name": "ErrorCode", "value": value}]
        assert bench.deliver(handlers["alert_webhook"], hostile) == "accepted"

    outcomes = bench.drain()

    assert log.texts == [rule_kql(BACKUP_FAILED.kql_name)] * len(HOSTILE_VALUES)
    assert [(o.vm_id, o.result, o.reason) for o in outcomes] == [("", Result.SKIPPED, NO_FAILURE)] * len(
        HOSTILE_VALUES
    )
    assert bench.backup_posts_per_vm()["api-03"] == 1
    worker = bench.remediation()

    @settings(max_examples=30, deadline=None)
    @given(vm=KQLISH, code=KQLISH, rule=st.sampled_from([BACKUP_FAILED, STILL_UNPROTECTED]))
    def any_value(vm: str, code: str, rule: AlertRuleDefinition) -> None:
        log.texts.clear()
        alert = copy.deepcopy(payload)
        alert["data"]["essentials"]["alertRule"] = rule.name
        [criterion] = alert["data"]["alertContext"]["condition"]["allOf"]
        criterion["dimensions"] = [{"name": "VmId", "value": vm}, {"name": "ErrorCode", "value": code}]

        found = worker.handle(read_alert(alert))

        assert log.texts == [rule_kql(rule.kql_name)]
        assert [(o.result, o.reason) for o in found] == [(Result.SKIPPED, NO_FAILURE)]

    any_value()
    assert bench.backup_posts_per_vm()["api-03"] == 1


# --- the queue function --------------------------------------------------------------------------
@pytest.fixture
def at_wall_clock(remediation_bench: RemediationBench) -> RemediationBench:
    """api-03 on a clock starting now: the functions read the wall clock."""
    remediation_bench.load(remediation_scenario("api-03", wall_clock=True))
    return remediation_bench


def _queue_message(bench: RemediationBench) -> func.QueueMessage:
    """The one work item, dequeued and handed over as the Functions host's queue trigger does."""
    [message] = bench.queue().receive_messages(max_messages=32, visibility_timeout=300)
    return func.QueueMessage(id=message.id, body=str(message.content), pop_receipt=message.pop_receipt)


def test_the_remediate_function_retries_from_a_queue_message(
    at_wall_clock: RemediationBench, handlers: Functions, caplog: pytest.LogCaptureFixture
) -> None:
    bench = at_wall_clock
    caplog.set_level(logging.INFO)
    payload = bench.failure_alert(API_03)
    bench.deliver(handlers["alert_webhook"], payload)

    handlers["remediate"](_queue_message(bench))

    assert bench.backup_posts_per_vm()["api-03"] == 2
    [logged] = [r for r in caplog.records if r.getMessage() == "remediation outcome"]
    assert (logged.vm_id, logged.result, logged.alert_id) == (  # type: ignore[attr-defined]
        API_03,
        "triggered",
        payload["data"]["essentials"]["alertId"],
    )
    bench.ship()
    record, run = sorted(bench.actions("Alert"), key=lambda r: r["Action"])  # the decision, then the run
    assert (record["VmId"], record["Result"], record["ErrorCode"]) == (
        API_03,
        "triggered",
        "BackUpOperationFailed",
    )
    assert (run["Action"], run["Result"], run["RunId"]) == ("remediation_run", "completed", record["RunId"])


def test_a_malformed_message_is_dropped_with_the_reason(
    remediation_bench: RemediationBench, handlers: Functions, caplog: pytest.LogCaptureFixture
) -> None:
    message = func.QueueMessage(id="m-1", body=b'{"alert_id": "a"}', pop_receipt="p")

    handlers["remediate"](message)  # returns: the host deletes the message, no poison round trips

    [logged] = [r for r in caplog.records if r.getMessage() == "dropped malformed remediation item"]
    assert (logged.levelno, logged.message_id) == (logging.ERROR, "m-1")  # type: ignore[attr-defined]
    assert logged.reason.startswith("missing fields: rule, monitoring_service")  # type: ignore[attr-defined]
    assert remediation_bench.requests() == []


def test_an_unreadable_workspace_raises_so_the_queue_redelivers(
    at_wall_clock: RemediationBench, handlers: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = at_wall_clock
    bench.deliver(handlers["alert_webhook"], bench.failure_alert(API_03))
    bench.use_env(monkeypatch, BACKUPWARDEN_HTTP_RETRY_TOTAL="0")
    bench.emulator.faults.add(Fault(path_regex=r"^/v1/workspaces/", status=503))

    with pytest.raises(AzureCallError) as raised:
        handlers["remediate"](_queue_message(bench))

    assert raised.value.step == f"query {BACKUP_FAILED.name}"
    assert bench.backup_posts_per_vm()["api-03"] == 1
    bench.emulator.faults.set([])
    bench.ship()
    [run] = bench.actions("Alert")  # nothing decided: only the failed run is recorded
    assert (run["Action"], run["Result"], run["VmId"]) == ("remediation_run", "failed", "")
    assert run["Reason"].startswith(f"query {BACKUP_FAILED.name} failed; ")


def test_the_poison_queue_function_logs_a_failed_outcome(
    remediation_bench: RemediationBench, handlers: Functions, caplog: pytest.LogCaptureFixture
) -> None:
    handlers["remediate_poison"](func.QueueMessage(id="m-9", body=json.dumps({"alert_id": "a"}).encode()))

    [logged] = [r for r in caplog.records if r.getMessage() == "remediation outcome"]
    assert (logged.levelno, logged.result, logged.message_id) == (  # type: ignore[attr-defined]
        logging.ERROR,
        "failed",  # recorded as the protect and sweep poison queues record theirs
        "m-9",
    )
