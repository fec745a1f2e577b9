"""Builds the sweep from settings: the one place that joins adapters, ledger and domain policy."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError, ResourceExistsError

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.discovery import Discovery, ResourceGraphDiscovery, VaultsDiscovery
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.inventory import Inventory
from backupwarden.adapters.azure.logs_ingestion import LogsUploader
from backupwarden.adapters.azure.logs_query import LogsQuery
from backupwarden.adapters.azure.protection import Protection
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.adapters.storage.ledger import DEFAULT_IN_PROGRESS_TTL, Ledger
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.adapters.storage.run_slots import LedgerRunSlots, UncappedSlots
from backupwarden.adapters.storage.sweep_queue import POISON_SUFFIX, SweepQueue
from backupwarden.domain.records import Outcome
from backupwarden.domain.remediation_rules import RemediationPolicy
from backupwarden.domain.sweep_rules import SweepPolicy
from backupwarden.flows.new_vm.worker import ProtectConfig, ProtectVm, WorkItem
from backupwarden.flows.outcomes.collector import JobOutcomeCollector
from backupwarden.flows.outcomes.shipper import Shipper
from backupwarden.flows.outcomes.shipping import ActionRecorder, OutcomeShipping
from backupwarden.flows.remediation.worker import Remediation, RemediationConfig
from backupwarden.flows.sweep.candidates import Sweep, SweepConfig, TriggerSlots
from backupwarden.flows.sweep.fanout import SweepFanout, SweepWorker
from backupwarden.flows.sweep.messages import DEFAULT_BATCH_SIZE, SweepWorkItem
from backupwarden.settings import Discovery as DiscoveryKind
from backupwarden.settings import Settings, SettingsError


def build_sweep(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int | None = None,
) -> Sweep:
    """`now` is the wall clock in Azure; the demo and the tests pass the emulator's clock.
    `workers`: candidates handled at a time in this process (default SweepConfig's)."""
    recovery = _recovery_services(settings, clients)
    discovery = build_discovery(settings, clients, recovery, now=now)
    ledger = ensured_ledger(settings, clients, now)
    config = SweepConfig(
        policy=SweepPolicy(
            grace_period=settings.grace_period,
            daily_budget=settings.daily_budget,
            max_triggers_per_run=settings.max_triggers_per_run,
            failure_classes=settings.failure_classes,
        ),
        recovery_point_expiry=timedelta(days=settings.recovery_point_expiry_days),
        dry_run=settings.dry_run if dry_run is None else dry_run,
    )
    if workers is not None:
        config = replace(config, workers=workers)
    return Sweep(
        discovery, recovery, ledger, lambda: subscriptions_in_scope(settings, clients), config, now=now
    )


def build_sweep_queue(settings: Settings, clients: AzureClients) -> SweepQueue | None:
    """BACKUPWARDEN_SWEEP_QUEUE and its poison queue; None without a queue service (table-only storage)."""
    if not (settings.storage_connection_string or settings.storage_queue_uri):
        return None
    name = settings.sweep_queue
    return SweepQueue(clients.work_queue(name), clients.work_queue(f"{name}{POISON_SUFFIX}"))


def build_sweep_fanout(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int | None = None,
    inline_max: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SweepFanout:
    """The timer's and the CLI's sweep: plan, then handle inline or enqueue on the sweep queue."""
    return SweepFanout(
        build_sweep(settings, clients, dry_run=dry_run, now=now, workers=workers),
        build_sweep_queue(settings, clients),
        inline_max=settings.sweep_inline_max if inline_max is None else inline_max,
        batch_size=batch_size,
    )


def build_sweep_worker(
    settings: Settings,
    clients: AzureClients,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int | None = None,
) -> SweepWorker:
    """The queue worker: one sweep per mode (a work item says whether its run is a dry run)."""
    sweeps: dict[bool, Sweep] = {}
    lock = threading.Lock()

    def sweep_for(dry_run: bool) -> Sweep:
        with lock:  # the worker's threads ask at once
            if dry_run not in sweeps:
                sweeps[dry_run] = build_sweep(settings, clients, dry_run=dry_run, now=now, workers=workers)
            return sweeps[dry_run]

    def slots_for(item: SweepWorkItem) -> TriggerSlots:
        if item.cap is None:
            return UncappedSlots()
        return LedgerRunSlots(clients.ledger_table(), item.run_id)

    sweep_for(settings.dry_run)  # builds the ledger table before the threads start
    return SweepWorker(sweep_for, slots_for)


def ensured_ledger(
    settings: Settings,
    clients: AzureClients,
    now: Callable[[], datetime],
    in_progress_ttl: timedelta = DEFAULT_IN_PROGRESS_TTL,
) -> Ledger:
    """The ledger; its table is created (if missing) the first time these clients are asked for it."""
    ledger = Ledger(clients.ledger_table(), clock=now, in_progress_ttl=in_progress_ttl)
    clients.ensure_once(f"table {settings.ledger_table}", ledger.ensure_table)
    return ledger


def ensured_outbox(settings: Settings, clients: AzureClients, now: Callable[[], datetime]) -> Outbox:
    """The outbox; its table is created (if missing) the first time these clients are asked for it."""
    outbox = Outbox(clients.outbox_table(), clock=now)
    clients.ensure_once(f"table {settings.outbox_table}", outbox.ensure_table)
    return outbox


def _recovery_services(settings: Settings, clients: AzureClients) -> RecoveryServices:
    return RecoveryServices(
        clients.backup,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
    )


def build_discovery(
    settings: Settings,
    clients: AzureClients,
    recovery: RecoveryServices,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Discovery:
    """The discovery strategy BACKUPWARDEN_DISCOVERY names."""
    if settings.discovery is DiscoveryKind.VAULTS:
        return VaultsDiscovery(clients.recovery_services, clients.compute, recovery, now=now)
    return ResourceGraphDiscovery(clients.resource_graph())


def subscriptions_in_scope(settings: Settings, clients: AzureClients) -> list[str]:
    """The configured subscriptions, or every enabled one the identity can see."""
    if settings.subscriptions:
        return list(settings.subscriptions)
    try:
        return sorted(
            str(sub.subscription_id).lower()
            for sub in clients.subscriptions().subscriptions.list()
            if (sub.state or "Enabled") == "Enabled"  # a str enum: compare, never str() it
        )
    except AzureError as exc:
        raise AzureCallError.from_sdk("list subscriptions", exc) from exc


PROTECT_CLAIM_TTL = timedelta(minutes=15)


def build_protect_vm(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ProtectVm:
    recovery = _recovery_services(settings, clients)
    protection = Protection(
        clients.backup,
        recovery,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
    )
    # a protect claim outlives any one function run (10 min at most), so a dead worker's claim frees soon
    ledger = ensured_ledger(settings, clients, now, in_progress_ttl=PROTECT_CLAIM_TTL)
    config = ProtectConfig(
        rules=settings.vault_rules,
        daily_budget=settings.daily_budget,
        recovery_point_expiry=timedelta(days=settings.recovery_point_expiry_days),
        dry_run=settings.dry_run if dry_run is None else dry_run,
        max_provisioning_waits=settings.max_provisioning_waits,
    )
    inventory = Inventory(clients.compute, clients.recovery_services)
    return ProtectVm(inventory, protection, recovery, ledger, config, now=now)


def enqueue_work_item(settings: Settings, clients: AzureClients, item: WorkItem, delay_s: int = 0) -> None:
    queue = clients.work_queue(settings.protect_queue)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    try:
        queue.send_message(item.to_json(), visibility_timeout=delay_s or None)
    except AzureError as exc:
        raise AzureCallError.from_sdk("enqueue work item", exc) from exc


def requeue_work_item(settings: Settings, clients: AzureClients, item: WorkItem) -> None:
    """Check a still-provisioning VM again later: a new message, invisible for the recheck delay."""
    enqueue_work_item(settings, clients, item, delay_s=settings.provisioning_recheck_s)


def build_action_recorder(
    settings: Settings, clients: AzureClients, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ActionRecorder:
    outbox = ensured_outbox(settings, clients, now)
    return ActionRecorder(outbox, now=now)


def build_outcome_shipping(
    settings: Settings, clients: AzureClients, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> OutcomeShipping:
    if not settings.dcr_immutable_id:
        raise SettingsError("BACKUPWARDEN_DCR_IMMUTABLE_ID: missing; needed to send records to Log Analytics")
    outbox = ensured_outbox(settings, clients, now)
    ledger = ensured_ledger(settings, clients, now)
    collector = JobOutcomeCollector(
        clients.resource_graph(),
        ledger,
        outbox,
        lambda: subscriptions_in_scope(settings, clients),
        overlap=settings.jobs_overlap,
        now=now,
    )
    shipper = Shipper(outbox, LogsUploader(clients.logs_ingestion(), settings.dcr_immutable_id))
    return OutcomeShipping(collector, shipper, outbox)


def record_actions(
    settings: Settings,
    clients: AzureClients,
    outcomes: list[Outcome],
    *,
    source: str,
    dry_run: bool,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Every decision of a run into the outbox, on its way to BackupAutomationActions_CL."""
    return build_action_recorder(settings, clients, now=now).record(outcomes, source=source, dry_run=dry_run)


def build_remediation(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Remediation:
    if not settings.workspace_id:
        raise SettingsError(
            "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: missing; remediation queries the alert's rows"
        )
    recovery = RecoveryServices(clients.backup, poll_timeout_s=settings.operation_poll_timeout_s)
    ledger = ensured_ledger(settings, clients, now)
    config = RemediationConfig(
        policy=RemediationPolicy(
            retry_cap=settings.retry_cap,
            daily_budget=settings.daily_budget,
            backoff=settings.retry_backoff,
            extra_classes=settings.failure_classes,
        ),
        recovery_point_expiry=timedelta(days=settings.recovery_point_expiry_days),
        dry_run=settings.dry_run if dry_run is None else dry_run,
    )
    logs = LogsQuery(clients.logs_query(), settings.workspace_id)
    return Remediation(logs, recovery, ledger, config, now=now)
