"""`python -m backupwarden demo` (or `python -m devtools.demo`): the main jobs against the embedded emulator
(demo scenario) and Azurite.

1. The sweep runs exactly as the timer would; the emulated clock then advances until the
   triggered backups finish, and each VM's state is read back through the Recovery Services API.
2. Two VMs are created partway; their Event Grid events go through the `vm_written` function onto
   the Storage queue, and the queue's work items through the `protect_vm` worker.
3. Both phases' decisions and the finished jobs go to the emulated Log Analytics workspace through
   the outbox and the Logs Ingestion API (`ship-outcomes`), and `report` reads them back with KQL.
5. Coverage (devtools/demo_coverage.py): an estate with every protection state once, its coverage,
   the reconciler's actions, and the coverage once the backups it started have run.
The emulator runs at 60 emulated seconds per real second, so the service's own waits (container
refresh, configure protection) take about a second.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import azure.functions as func

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.app import (
    build_action_recorder,
    build_clients,
    build_outcome_shipping,
    build_protect_vm,
    build_remediation,
    build_sweep,
    report_query,
)
from backupwarden.domain.alert_rules import ALERT_RULES, AlertRuleDefinition
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES, TABLES
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.text_table import text_table
from backupwarden.domain.times import parse_time
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.outcomes.report import build_outcome_report, render_report_table
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.run_report import RunReport
from backupwarden.flows.sweep.candidates import SWEEP_RUN_ACTION
from backupwarden.settings import Settings
from devtools.demo_coverage import coverage_phase
from devtools.function_host import FunctionHttpHost
from emulator import Emulator, EmulatorServer
from emulator.azurite import Azurite
from emulator.compute.models import ComputeBackend
from emulator.eventgrid.models import EventGridBackend
from emulator.monitor.models import MonitorBackend
from emulator.scenario import load_scenario_file

TIME_SCALE = 60.0
PROD = "11111111-1111-4111-8111-111111111111"
NEW_VMS = (  # (resource group, name, region, tags): one the weu vault takes, one where no vault is
    ("rg-new", "web-05", "westeurope", {"env": "prod", "backupwarden:policy": "EnhancedPolicy"}),
    ("rg-new", "gpu-01", "swedencentral", {"env": "prod"}),
)


DEMO_WORKSPACE_ID = "0b5e8a0e-5c3d-4d7e-9f1a-7c2b1e0d4a11"
DEMO_DCR_ID = "dcr-5ba0c0de0123456789abcdef01234567"
REPORT_WINDOW = timedelta(hours=24)  # `report`'s default --since


def provision_log_analytics(
    emulator: Emulator, workspace_id: str = DEMO_WORKSPACE_ID, dcr_id: str = DEMO_DCR_ID
) -> None:
    """What infra/app/monitoring.bicep deploys, in the emulator: the workspace, its tables and the DCR."""
    monitor = emulator.backend(MonitorBackend)
    monitor.add_workspace("backupwarden", customer_id=workspace_id)
    streams = {
        table.stream: {
            "columns": [{"name": c.name, "type": c.type} for c in table.columns],
            "output_table": table.table,
            "workspace": workspace_id,
        }
        for table in TABLES
    }
    monitor.add_dcr("backupwarden", streams, immutable_id=dcr_id)


def demo_environment(endpoint: str, ca_bundle: str, storage: str) -> dict[str, str]:
    return {
        "BACKUPWARDEN_ARM_ENDPOINT": endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "demo",
        "BACKUPWARDEN_CA_BUNDLE": ca_bundle,
        "AzureWebJobsStorage": storage,
        "BACKUPWARDEN_PROTECT_QUEUE": "backupwarden-protect",
        "SWEEP_SCHEDULE": "0 */30 * * * *",
        "RECONCILE_SCHEDULE": "0 15 * * * *",
        "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": endpoint,
        "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": endpoint,
        "BACKUPWARDEN_DCR_IMMUTABLE_ID": DEMO_DCR_ID,
        "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID": DEMO_WORKSPACE_ID,
    }


def demo_settings(endpoint: str, ca_bundle: str, storage: str) -> Settings:
    return Settings.from_env(demo_environment(endpoint, ca_bundle, storage))


def run_demo() -> int:
    emulator = Emulator(time_scale=TIME_SCALE)
    emulator.load_scenario(load_scenario_file("demo"))
    provision_log_analytics(emulator)
    with Azurite() as azurite, EmulatorServer(emulator) as server:
        environment = demo_environment(server.endpoint, server.ca_bundle, azurite.connection_string)
        os.environ.update(environment)  # the Functions handlers read their settings from the environment
        settings = Settings.from_env(environment)
        with build_clients(settings) as clients:
            print(_sweep_phase(emulator, settings, clients))
            print()
            print(_remediation_phase(emulator, settings, clients))
            print()
            print(_new_vm_phase(emulator, settings, clients))
            print()
            print(_report_phase(emulator, settings, clients))
            print()
            handled = emulator.requests.summary()["total"]  # phase 5 loads its own estate, log and all
            print(coverage_phase(emulator, settings, clients))
        handled += emulator.requests.summary()["total"]
        print(f"\nemulator handled {handled} requests.")
    return 0


# --- 1. the sweep ---------------------------------------------------------------------------------
def _sweep_phase(emulator: Emulator, settings: Settings, clients: AzureClients) -> str:
    before = _states(emulator)
    report = build_sweep(settings, clients, now=emulator.now).run()
    decisions = [*report.outcomes, report.run_record(SWEEP_RUN_ACTION)]  # as the timer records them
    recorder = build_action_recorder(settings, clients, now=emulator.now)
    recorder.record(decisions, source="Timer", dry_run=report.dry_run)
    emulator.advance(emulator.estate.timings.backup_job_s + 60)
    recovery = RecoveryServices(clients.backup)
    after = {**_states(emulator), **_verified_states(report.outcomes, recovery, since=report.started)}
    return _render_sweep(report, emulator, before, after)


def _states(emulator: Emulator) -> dict[str, str]:
    """Protection state per VM id, or 'unprotected'."""
    with emulator.lock:
        items = emulator.estate.protected_items
        return {
            vm_id: (items[vm_id].protection_state if vm_id in items else "unprotected")
            for vm_id in emulator.estate.vms
        }


def _verified_states(
    outcomes: list[Outcome], recovery: RecoveryServices, *, since: datetime | None = None
) -> dict[str, str]:
    """Each VM with a backup job: its state and the job's status, read back through Recovery Services.

    `since`: a trigger without its job id (the sweep sends the POST alone) is shown with the VM's
    newest ad hoc Backup job the job list shows started since then."""
    states = {}
    for outcome in outcomes:
        if not outcome.vault_id or (outcome.job_id is None and since is None):
            continue
        vault = VaultRef.parse(outcome.vault_id)
        rg, name = outcome.vm_id.split("/resourcegroups/")[1].split("/")[0], outcome.vm_id.rsplit("/", 1)[-1]
        container = f"iaasvmcontainer;iaasvmcontainerv2;{rg};{name}"
        if outcome.job_id is not None:
            status, error_code = recovery.job_status(vault, outcome.job_id)
            job = f"job {status}"
        elif since is not None and outcome.result is Result.TRIGGERED:
            listed = recovery.backup_jobs_started(vault, container, since, since + timedelta(days=1))
            ad_hoc = [found for found in listed if found.user_triggered is not False]
            if not ad_hoc:
                continue
            newest = ad_hoc[-1]  # the list is oldest first
            status, error_code = newest.status, newest.error_code
            job = f"job {newest.job_id} {status}"  # the outcome does not name it
        else:
            continue
        item = recovery.protected_item(vault, container, f"vm;iaasvmcontainerv2;{rg};{name}")
        job = f"{job}{': ' + error_code if error_code else ''}"
        states[outcome.vm_id] = f"{item['properties'].get('protectionState')} ({job})"
    return states


def _render_sweep(
    report: RunReport, emulator: Emulator, before: dict[str, str], after: dict[str, str]
) -> str:
    by_vm = {o.vm_id: o for o in report.outcomes}
    rows = [("VM", "REGION", "BEFORE", "SWEEP", "WHY", "AFTER")]
    with emulator.lock:
        vms = sorted(emulator.estate.vms.values(), key=lambda vm: (vm.subscription_id, vm.location, vm.name))
    for vm in vms:
        key = vm.id.lower()
        outcome = by_vm.get(key)
        result = outcome.result.value if outcome else "-"
        why = outcome.reason if outcome else "not a candidate (not in initial-backup-pending)"
        if outcome and outcome.error_code:
            why = f"{why}: {outcome.error_code}"
        rows.append((vm.name, vm.location, before.get(key, "?"), result, why, after.get(key, "?")))
    summary = report.summary()
    triggered = [o.vm_id for o in report.outcomes if o.result is Result.TRIGGERED]
    protected = sum(1 for vm_id in triggered if after.get(vm_id, "").startswith("Protected"))
    return "\n".join(
        [
            "== 1. sweep: VMs stuck in 'Initial backup pending' ==",
            text_table(rows),
            "",
            f"sweep run {report.run_id}: {summary['candidates']} candidates; "
            + ", ".join(f"{summary[k]} {k}" for k in ("triggered", "skipped", "dry_run", "failed")),
            f"after the emulated clock advanced: {protected} of {len(triggered)} triggered VMs are Protected",
        ]
    )


# --- 2. alerts and remediation ---------------------------------------------------------------------
REMEDIATION_ROUNDS = 3


def provision_alert_rules(
    emulator: Emulator,
    webhook_url: str | None,
    workspace_id: str = DEMO_WORKSPACE_ID,
    rules: Sequence[AlertRuleDefinition] = ALERT_RULES,
) -> None:
    """What infra/app/alerts.bicep deploys, in the emulator: the rules of alert_rules.py, same KQL files."""
    monitor = emulator.backend(MonitorBackend)
    for rule in rules:
        monitor.add_alert_rule(
            {
                "name": rule.name,
                "workspace": workspace_id,
                "query": load_kql(rule.kql_name),
                "frequency_s": rule.frequency.total_seconds(),
                "window_s": rule.window.total_seconds(),
                "threshold": {"operator": rule.operator, "value": rule.threshold},
                "dimensions": list(rule.dimensions),
                "severity": rule.severity,
                "description": rule.description,
                "webhook_url": webhook_url,
            }
        )


def _remediation_phase(emulator: Emulator, settings: Settings, clients: AzureClients) -> str:
    """Rounds of: ship outcomes → the emulator evaluates the alert rules and POSTs to alert_webhook →
    the remediation worker drains its queue → the clock moves on until the retried jobs end."""
    handlers = _function_handlers()
    monitor = emulator.backend(MonitorBackend)
    rows = [("ROUND", "VM", "ERROR", "REMEDIATION", "WHY")]
    attempted: list[Outcome] = []
    with FunctionHttpHost(handlers["alert_webhook"], "alerts") as host:
        provision_alert_rules(emulator, host.url)
        queue = clients.work_queue(settings.remediation_queue)
        worker = build_remediation(settings, clients, now=emulator.now)
        for round_number in range(1, REMEDIATION_ROUNDS + 1):
            build_outcome_shipping(settings, clients, now=emulator.now).run()
            monitor.evaluate_alerts()
            monitor.wait_for_deliveries(timeout_s=30)
            outcomes: list[Outcome] = []
            for message in queue.receive_messages(max_messages=32):
                outcomes.extend(worker.handle_item(RemediationWorkItem.from_json(message.content)))
                queue.delete_message(message)
            recorder = build_action_recorder(settings, clients, now=emulator.now)
            recorder.record(outcomes, source="Alert", dry_run=settings.dry_run)
            attempted.extend(outcomes)
            for outcome in outcomes:
                rows.append(
                    (
                        str(round_number),
                        outcome.vm_id.rsplit("/", 1)[-1] or "-",
                        outcome.error_code or "-",
                        outcome.result.value,
                        outcome.reason,
                    )
                )
            emulator.advance(emulator.estate.timings.backup_job_s + 60)
    notified = len(monitor.outbox())
    retried = [o for o in attempted if o.job_id]
    after = _verified_states(retried, RecoveryServices(clients.backup))
    final = "; ".join(
        f"{o.vm_id.rsplit('/', 1)[-1]}: {after.get(o.vm_id, '?')}"
        for o in {o.vm_id: o for o in retried}.values()
    )
    return "\n".join(
        [
            "== 2. alerts → alert_webhook → queue → remediation: retry what a retry fixes, escalate ==",
            f"{notified} alert notifications POSTed by the emulator's evaluator to {host.url}",
            text_table(rows),
            f"after the last round: {final}",
            "(automation-silent fires from round 2 on: the demo runs the sweep once, not every 30 min;"
            " flow-silent, because outcomes ship only in phase 4; automation-problems, on the escalations)",
        ]
    )


def _function_handlers() -> dict[str, Any]:
    logging.getLogger().setLevel(logging.ERROR)  # azure-functions warns about auth levels on import
    from function_app import app  # the deployed entry point: the same handlers the host calls

    for name in ("backupwarden", "functions"):
        logging.getLogger(name).setLevel(logging.WARNING)  # the tables say it all
    global _HANDLERS
    if _HANDLERS is None:  # azure-functions indexes an app once
        _HANDLERS = {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    return _HANDLERS


_HANDLERS: dict[str, Any] | None = None


# --- 3. new VMs -----------------------------------------------------------------------------------
def _new_vm_phase(emulator: Emulator, settings: Settings, clients: AzureClients) -> str:
    handlers = _function_handlers()
    events = emulator.backend(EventGridBackend)
    already = len(events.events())
    compute = emulator.backend(ComputeBackend)
    for resource_group, name, region, tags in NEW_VMS:
        compute.create_vm(PROD, resource_group, name, region, tags=tags)
    published = events.events()[already:]
    for event in published:
        handlers["vm_written"](_grid_event(event))
    queue = clients.work_queue(settings.protect_queue)
    worker = build_protect_vm(settings, clients, now=emulator.now)
    outcomes: list[Outcome] = []
    for message in queue.receive_messages(max_messages=32):
        outcomes.append(worker.handle(NewVmWorkItem.from_json(message.content)))
        queue.delete_message(message)
    recorder = build_action_recorder(settings, clients, now=emulator.now)
    recorder.record(outcomes, source="Cli", dry_run=settings.dry_run)
    emulator.advance(emulator.estate.timings.backup_job_s + 60)
    after = _verified_states(outcomes, RecoveryServices(clients.backup))
    rows = [("VM", "REGION", "OUTCOME", "WHY", "AFTER")]
    for outcome in outcomes:
        vm = emulator.estate.vms.get(outcome.vm_id)
        region = vm.location if vm else "?"
        rows.append(
            (
                outcome.vm_id.rsplit("/", 1)[-1],
                region,
                outcome.result.value,
                outcome.reason,
                after.get(outcome.vm_id, "-"),
            )
        )
    return "\n".join(
        [
            "== 3. new VMs: Event Grid -> vm_written -> queue -> protect_vm ==",
            f"{len(NEW_VMS)} VMs created, {len(published)} events published "
            f"(a create can emit a duplicate pair); {len(outcomes)} work items handled",
            text_table(rows),
        ]
    )


# --- 4. Log Analytics -----------------------------------------------------------------------------
def _report_phase(emulator: Emulator, settings: Settings, clients: AzureClients) -> str:
    emulator.advance(60)  # the new VMs' jobs have ended; the shipper reads up to the emulated now
    shipped = build_outcome_shipping(settings, clients, now=emulator.now).run()
    counts = {result.stream: result.shipped for result in shipped.results}
    report = build_outcome_report(report_query(settings, clients), REPORT_WINDOW)
    jobs, actions = counts.get(JOB_OUTCOMES.stream, 0), counts.get(AUTOMATION_ACTIONS.stream, 0)
    return "\n".join(
        [
            "== 4. Log Analytics: ship-outcomes, then report --since 24h ==",
            f"shipped {jobs} job outcomes and {actions} automation decisions to workspace "
            f"{settings.workspace_id}; the report below reads them back with the KQL of kql/",
            "",
            render_report_table(report),
        ]
    )


def _grid_event(event: dict[str, Any]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=str(event["id"]),
        data=event["data"],
        topic=str(event.get("topic", "")),
        subject=str(event.get("subject", "")),
        event_type=str(event["eventType"]),
        event_time=parse_time(event["eventTime"]),
        data_version=str(event.get("dataVersion", "")),
    )


if __name__ == "__main__":
    sys.exit(run_demo())
