"""An Azure Backup built-in job-failure alert reaches remediation through the deployed routing.

infra/app/backup-alert-routing.bicep adds backupwarden's action group to the vaults' built-in alerts
(tests/test_infra.py checks the rule). Here the rest of that path runs for real: scheduled backups fail
on the emulator, their outcomes are shipped to the workspace, the emulator's action-group delivery POSTs
the built-in alert (tests/samples/, with its provenance) to `alert_webhook` served on loopback, the
webhook queues it on Azurite, and the `remediate` queue function retries the VM a retry can fix and
escalates the one whose failure class a retry cannot fix.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func

from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.times import iso_z
from tests.alert_webhook_fixtures import handlers_fixture, new_alert_id  # noqa: F401
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, remediation_scenario, serving

Functions = dict[str, Callable[..., Any]]
SAMPLE = Path(__file__).parent / "samples" / "azure_backup_job_failure_alert.json"
API_03 = vm_id_of(PROD, "rg-api", "api-03").lower()  # fails once with BackUpOperationFailed: retry
PAY_01 = vm_id_of(PROD, "rg-pay", "pay-01").lower()  # UserErrorRequestDisallowedByPolicy: escalate


def built_in_alert(vault_id: str, fired_at: str) -> dict[str, Any]:
    """The sample, as the vault's alert fires now."""
    payload: dict[str, Any] = json.loads(SAMPLE.read_text())
    del payload["_provenance"]
    essentials = payload["data"]["essentials"]
    essentials.update(
        alertId=new_alert_id(),
        alertTargetIDs=[vault_id],
        configurationItems=[vault_id.rsplit("/", 1)[-1]],
        firedDateTime=fired_at,
    )
    return payload


def test_a_built_in_backup_failure_alert_is_retried_or_escalated_per_failure_class(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("api-03", "pay-01", wall_clock=True))  # the functions read the wall clock
    for vm_id in (API_03, PAY_01):
        bench.backup_now(vm_id)  # as the policy's schedule starts them
    bench.advance_past_jobs()
    bench.ship()
    failed = {row["VmId"]: row for row in bench.landed(JOB_OUTCOMES.table) if row["Status"] == "Failed"}
    assert set(failed) == {API_03, PAY_01}
    [vault_id] = {row["VaultId"] for row in failed.values()}

    with serving(handlers["alert_webhook"]) as host:
        alert = built_in_alert(vault_id, iso_z(bench.emulator.now()))
        bench.monitor.deliveries.add(alert, host.url, bench.monitor.settings.delivery)
        assert bench.monitor.wait_for_deliveries(timeout_s=30)
    [delivery] = [e for e in bench.monitor.outbox_entries() if e["payload"] == alert]
    assert [a["status"] for a in delivery["delivery"]["attempts"]] == [202]

    [message] = bench.queue().receive_messages(max_messages=32, visibility_timeout=300)
    handlers["remediate"](
        func.QueueMessage(id=message.id, body=str(message.content), pop_receipt=message.pop_receipt)
    )

    assert bench.backup_posts_per_vm() == Counter({"api-03": 2, "pay-01": 1}), "one retry, of api-03 only"
    bench.ship()
    decided = {row["VmId"]: row for row in bench.actions("Alert") if row["VmId"]}  # besides the run's own
    assert set(decided) == {API_03, PAY_01}
    assert (decided[API_03]["Result"], decided[API_03]["ErrorCode"]) == ("triggered", "BackUpOperationFailed")
    assert decided[API_03]["Reason"].startswith("BackUpOperationFailed: retry, retry 1; backup job ")
    assert (decided[PAY_01]["Result"], decided[PAY_01]["ErrorCode"]) == (
        "escalated",
        "UserErrorRequestDisallowedByPolicy",
    )
    assert decided[PAY_01]["Reason"].endswith(failed[PAY_01]["Recommendation"])
