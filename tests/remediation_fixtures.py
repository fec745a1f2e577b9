"""What the remediation tests share: the outcome bench (emulator over HTTPS, Azurite, own ledger and outbox
tables, the workspace and DCR provisioned) with the demo's failing VMs, an own remediation queue and
alert de-duplication table, the alert rules of backupwarden/domain/alert_rules.py in the emulator's evaluator,
and `alert_webhook` served on loopback so the evaluator can POST to it as an action group would.

The emulated clock stands still (scale 0): only `advance()` moves it, so backoff windows and alert
windows are exact. Backup jobs take the demo's 41 minutes; one `advance_past_jobs()` ends them.
`remediation_bench` is registered in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.mgmt.recoveryservicesbackup.models import BackupRequestResource, IaasVMBackupRequest
from azure.storage.queue import QueueClient

from backupwarden import app as wiring
from backupwarden.adapters.azure.logs_query import LogsQuery, Timespan
from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.recovery_services import VaultRef
from backupwarden.app import build_action_recorder, build_remediation, build_sweep
from backupwarden.domain.alert_rules import ALERT_RULES, BACKUP_FAILED, AlertRuleDefinition
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Outcome
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.remediation.worker import Remediation
from backupwarden.flows.run_report import RunReport
from backupwarden.flows.sweep.candidates import SWEEP_RUN_ACTION
from devtools.demo import DEMO_WORKSPACE_ID, provision_alert_rules
from devtools.function_host import FunctionHttpHost
from emulator import Emulator, EmulatorServer
from emulator.monitor.models import MonitorBackend
from tests.alert_webhook_fixtures import http_request, new_alert_id
from tests.new_vm_fixtures import WEU_VAULT
from tests.outcome_fixtures import OutcomeBench
from tests.sweep_fixtures import demo_scenario, vm_name

Handler = Callable[[func.HttpRequest], func.HttpResponse]

DEMO_TIMINGS = {  # the demo's job length; every poll answered at once
    "backup_job_s": 2460,
    "backup_operation_s": 0,
    "refresh_containers_s": 0,
    "configure_operation_s": 0,
    "retry_after_s": 0,
}


LOOP_VMS = ("api-03", "db-02", "pay-01", "dev-04", "web-01")  # the failing four and one that succeeds


@functools.cache
def _demo() -> dict[str, Any]:
    return demo_scenario()


def remediation_scenario(*vm_names: str, wall_clock: bool = False) -> dict[str, Any]:
    """The demo estate cut to the named VMs (default LOOP_VMS), on a clock that stands still: api-03 fails
    once with BackUpOperationFailed, db-02 (agent), pay-01 (policy) and dev-04 (VM deleted) for good.
    `wall_clock`: the clock starts now, for entry points that read the wall clock (CLI, functions)."""
    keep = set(vm_names or LOOP_VMS)
    scenario = copy.deepcopy(_demo())
    for subscription in scenario["subscriptions"]:
        subscription["vms"] = [vm for vm in subscription.get("vms") or [] if vm["name"] in keep]
    scenario["clock"]["scale"] = 0
    if wall_clock:
        scenario["clock"]["start"] = datetime.now(UTC).isoformat()
    scenario.setdefault("timings", {}).update(DEMO_TIMINGS)
    return scenario


@dataclass
class RemediationBench(OutcomeBench):
    remediation_queue: str = field(default_factory=lambda: f"remediate-{uuid.uuid4().hex[:12]}")
    alert_table: str = field(default_factory=lambda: f"alerts{uuid.uuid4().hex[:12]}")

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(
            **{
                "BACKUPWARDEN_REMEDIATION_QUEUE": self.remediation_queue,
                "BACKUPWARDEN_ALERT_DEDUP_TABLE": self.alert_table,
                **overrides,
            }
        )

    def use_env(self, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
        """The settings in the environment, as the Functions host sets app settings."""
        for name, value in self.env(**overrides).items():
            monkeypatch.setenv(name, value)

    @property
    def monitor(self) -> MonitorBackend:
        return self.emulator.backend(MonitorBackend)

    # --- backups and their failures ----------------------------------------------------------------
    def sweep_and_record(self) -> RunReport:
        """One sweep as the timer runs it (its decisions and heartbeat into the outbox)."""
        settings = self.settings()
        clients = self.clients(settings)
        report = build_sweep(settings, clients, now=self.emulator.now).run()
        decisions = [*report.outcomes, report.run_record(SWEEP_RUN_ACTION)]
        recorder = build_action_recorder(settings, clients, now=self.emulator.now)
        recorder.record(decisions, source="Timer", dry_run=False)
        return report

    def advance_past_jobs(self) -> None:
        """Every backup job started so far has ended (failed or completed) a minute ago."""
        self.emulator.advance(self.emulator.estate.timings.backup_job_s + 60)

    def backup_now(self, vm_id: str, vault_id: str = WEU_VAULT) -> None:
        """Someone's "Backup now" of a protected VM (the portal's, or its policy's schedule)."""
        vault = VaultRef.parse(vault_id)
        container, item = item_names(vm_id.split("/")[4], vm_name(vm_id))
        expiry = self.emulator.now() + timedelta(days=30)
        self.backup_client(vault.subscription_id).backups.trigger(
            vault.name,
            vault.resource_group,
            "Azure",
            container,
            item,
            BackupRequestResource(properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=expiry)),
        )

    # --- alerts ----------------------------------------------------------------------------------
    def add_rules(self, webhook_url: str | None, *rules: AlertRuleDefinition) -> None:
        """As infra/app/alerts.bicep deploys them (the demo's provisioning); default all of ALERT_RULES."""
        provision_alert_rules(self.emulator, webhook_url, DEMO_WORKSPACE_ID, rules or ALERT_RULES)

    def evaluate(self) -> list[dict[str, Any]]:
        """The rules evaluated now; returns the notifications, after their webhook deliveries ended."""
        payloads = self.monitor.evaluate_alerts()
        assert self.monitor.wait_for_deliveries(timeout_s=30), "alert deliveries still running"
        return payloads

    def notifications(
        self, rule: str | None = None, condition: str = "Fired", vm: str | None = None
    ) -> list[dict[str, Any]]:
        """The evaluator's notifications so far, oldest first: of a rule, a condition, a VM name."""
        return [
            payload
            for payload in self.monitor.outbox()
            if payload["data"]["essentials"]["monitorCondition"] == condition
            and (rule is None or payload["data"]["essentials"]["alertRule"] == rule)
            and (vm is None or vm_name(dimensions(payload).get("VmId", "")) == vm)
        ]

    def failure_alert(self, vm_id: str) -> dict[str, Any]:
        """The VM's backup runs and fails, the outcomes are shipped, and the "backup failed" rule (stored,
        no webhook) fires: its one notification about the VM."""
        self.backup_now(vm_id)
        self.advance_past_jobs()
        self.ship()
        self.add_rules(None, BACKUP_FAILED)  # only now: no evaluation ticks while the job ran
        self.evaluate()
        [payload] = self.notifications(BACKUP_FAILED.name, vm=vm_name(vm_id))
        return payload

    # --- remediation -----------------------------------------------------------------------------
    def remediation(self, dry_run: bool | None = None, **overrides: str) -> Remediation:
        """The remediation worker as `remediate` builds it (own SDK clients), on the emulator's clock."""
        settings = self.settings(**overrides)
        return build_remediation(settings, self.clients(settings), dry_run=dry_run, now=self.emulator.now)

    def queue(self) -> QueueClient:
        return self.clients(self.settings()).work_queue(self.remediation_queue)

    def work_items(self) -> list[RemediationWorkItem]:
        """Dequeue (and delete) every visible work item, as the queue trigger would."""
        queue = self.queue()
        try:
            messages = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
        except ResourceNotFoundError:
            return []
        items = []
        for message in messages:
            items.append(RemediationWorkItem.from_json(message.content))
            queue.delete_message(message)
        return items

    def drain(self, worker: Remediation | None = None, **overrides: str) -> list[Outcome]:
        """Remediate every queued work item and record the decisions (source Alert), as `remediate` does."""
        worker = worker or self.remediation(None, **overrides)
        outcomes = [outcome for item in self.work_items() for outcome in worker.handle_item(item)]
        settings = self.settings(**overrides)
        recorder = build_action_recorder(settings, self.clients(settings), now=self.emulator.now)
        recorder.record(outcomes, source="Alert", dry_run=False)
        return outcomes

    def deliver(self, handler: Handler, payload: dict[str, Any]) -> str:
        """POST a notification to `alert_webhook` as the Functions host hands it over; its answer's status."""
        response = handler(http_request(payload))
        assert response.status_code == 202, response.get_body()
        return str(json.loads(response.get_body())["status"])

    # --- reading back ----------------------------------------------------------------------------
    def backup_posts_per_vm(self) -> Counter[str]:
        """How many "Backup now" POSTs the emulator received, per VM name."""
        return Counter(self.backup_post_vms())

    def actions(self, source: str = "Alert") -> list[dict[str, Any]]:
        """The BackupAutomationActions_CL records of a source, as they landed in the workspace."""
        return [row for row in self.landed(AUTOMATION_ACTIONS.table) if row["Source"] == source]

    def close(self) -> None:
        with (
            QueueClient.from_connection_string(self.storage, self.remediation_queue) as queue,
            contextlib.suppress(ResourceNotFoundError),
        ):
            queue.delete_queue()
        with TableServiceClient.from_connection_string(self.storage) as service:
            service.delete_table(self.alert_table)
        super().close()


def dimensions(payload: dict[str, Any]) -> dict[str, str]:
    """The dimension values of a log search alert notification, by name."""
    [criterion] = payload["data"]["alertContext"]["condition"]["allOf"]
    return {entry["name"]: entry["value"] for entry in criterion["dimensions"]}


def with_new_alert_id(payload: dict[str, Any]) -> dict[str, Any]:
    """Another alert with the same content (another rule or another firing of the same failure)."""
    copied = copy.deepcopy(payload)
    copied["data"]["essentials"]["alertId"] = new_alert_id()
    return copied


@dataclass
class QueryLog:
    """Every query text the remediation worker's LogsQuery adapter is asked to run (then run for real)."""

    texts: list[str] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        log = self

        class RecordingLogsQuery(LogsQuery):
            def rows(
                self, query: str, timespan: Timespan, step: str = "log analytics query"
            ) -> list[dict[str, Any]]:
                log.texts.append(query)
                return super().rows(query, timespan, step)

        monkeypatch.setattr(wiring, "LogsQuery", RecordingLogsQuery)


@pytest.fixture
def remediation_bench(
    emulator: Emulator, emulator_server: EmulatorServer, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RemediationBench]:
    """api-03 of the demo estate on a still clock, the workspace provisioned, the settings in the
    environment (a test loads another estate with `bench.load(remediation_scenario(...))`)."""
    bench = RemediationBench(emulator, emulator_server, azurite)
    bench.load(remediation_scenario("api-03"))
    bench.use_env(monkeypatch)
    yield bench
    bench.close()


@contextlib.contextmanager
def serving(handler: Handler, route: str = "alerts") -> Iterator[FunctionHttpHost]:
    """An HTTP function on loopback, as the Functions host's front door serves it."""
    with FunctionHttpHost(handler, route) as host:
        yield host
