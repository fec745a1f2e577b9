"""The composition root: the one place that builds objects from settings and keeps process caches.

Every trigger, the CLI and the dev tools get their flows from the builders here; nothing here calls
Azure itself (the flows and adapters it builds do). What a process keeps across function
invocations (SDK clients, ARM pacers, the tenant's signing keys) lives in one `ProcessCache`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.discovery import Discovery, ResourceGraphDiscovery, VaultsDiscovery
from backupwarden.adapters.azure.enrolment_reads import EnrolmentReads
from backupwarden.adapters.azure.inventory import Inventory
from backupwarden.adapters.azure.logs_ingestion import LogsUploader
from backupwarden.adapters.azure.logs_query import LogsQuery
from backupwarden.adapters.azure.pacing import BucketRate, Pacer
from backupwarden.adapters.azure.policy_restrictions import PolicyRestrictionsCheck
from backupwarden.adapters.azure.protection import Protection
from backupwarden.adapters.azure.protection_inventory import ProtectionInventoryReader
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.adapters.azure.resource_graph import query_rows
from backupwarden.adapters.azure.subscriptions import SubscriptionScope
from backupwarden.adapters.azure.vault_inventory import VaultInventoryReader
from backupwarden.adapters.azure.webhook_token import HttpsJsonFetcher, SigningKeys, WebhookTokenValidator
from backupwarden.adapters.storage.alert_dedup import AlertDedup
from backupwarden.adapters.storage.ledger import DEFAULT_IN_PROGRESS_TTL, Ledger
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.adapters.storage.queues import POISON_SUFFIX, SweepQueue, WorkQueue
from backupwarden.adapters.storage.run_slots import LedgerRunSlots, UncappedSlots
from backupwarden.domain.protection_states import StateRules
from backupwarden.domain.remediation_rules import RemediationPolicy
from backupwarden.domain.sweep_rules import SweepPolicy
from backupwarden.domain.times import Deadline, utc_now
from backupwarden.flows.coverage import Coverage, InventoryReader
from backupwarden.flows.coverage_shipping import CoverageRecorder
from backupwarden.flows.enrolment_preflight import Enrolment
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import ProtectConfig, ProtectStep, ProtectVm
from backupwarden.flows.outcomes.collector import JobOutcomeCollector
from backupwarden.flows.outcomes.shipper import Shipper
from backupwarden.flows.outcomes.shipping import OutcomeShipping
from backupwarden.flows.reconcile import TRIGGERED_BY as RECONCILE_TRIGGERED_BY
from backupwarden.flows.reconcile import ReconcileConfig, Reconciler
from backupwarden.flows.recorder import ActionRecorder
from backupwarden.flows.remediation.intake import AlertIntake
from backupwarden.flows.remediation.worker import Remediation, RemediationConfig
from backupwarden.flows.sweep.candidates import Sweep, SweepConfig, TriggerSlots
from backupwarden.flows.sweep.fanout import SweepFanout, SweepWorker
from backupwarden.flows.sweep.messages import DEFAULT_BATCH_SIZE, SweepWorkItem
from backupwarden.settings import DiscoveryMode, Settings, SettingsError

T = TypeVar("T")


class ProcessCache:
    """What this process builds once and keeps across function invocations, by (kind, key), under one lock.

    Builders run under the lock: every one of them only constructs objects (no call goes out), so
    it is held briefly and no two threads build the same thing. A kind given a `limit` keeps that
    many, the least recently used one beyond it is dropped and closed.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: a builder may ask for another kind
        self._kinds: dict[str, OrderedDict[Hashable, Any]] = {}

    def get(self, kind: str, key: Hashable, build: Callable[[], T], *, limit: int | None = None) -> T:
        with self._lock:
            kept = self._kinds.setdefault(kind, OrderedDict())
            if key in kept:
                kept.move_to_end(key)
                found: T = kept[key]
                return found
            built = kept[key] = build()
            evicted = kept.popitem(last=False)[1] if limit is not None and len(kept) > limit else None
        close = getattr(evicted, "close", None)
        if close is not None:
            close()  # outside the lock: closing clients closes their connections
        return built

    def forget(self, kind: str) -> None:
        """Drop (without closing) everything of a kind: tests start from a fresh process's state."""
        with self._lock:
            self._kinds.pop(kind, None)


PROCESS = ProcessCache()
SHARED_CLIENTS_LIMIT = 8  # one in production (settings do not change in a running host); tests use many


def shared_clients(settings: Settings) -> AzureClients:
    """The clients of this process for `settings`, built once and kept across function invocations.

    Building them per invocation would cost every queue message a token request and new TLS
    connections to ARM and Storage, and repeat each table's create; Azure Functions' guidance is to
    reuse clients across invocations. Never closed by the caller: they live as long as the process.
    """
    # Settings holds a dict, so it is not hashable; its repr is its value, except the secrets it hides
    # from repr, which count through a digest (two storage accounts must not share clients).
    secrets = "\0".join(s or "" for s in (settings.static_token, settings.storage_connection_string))
    key = (repr(settings), hashlib.sha256(secrets.encode()).hexdigest())
    return PROCESS.get("clients", key, lambda: build_clients(settings), limit=SHARED_CLIENTS_LIMIT)


def build_clients(settings: Settings) -> AzureClients:
    """Clients of their own (the CLI's, closed by their caller), paced by the process's ARM buckets."""
    return AzureClients(settings, pacer=process_pacer(settings))


def process_pacer(settings: Settings) -> Pacer:
    """The process's pacer for the settings' ARM endpoint and bucket rates, shared by every client and
    thread: ARM's buckets are per subscription, not per client."""
    reads, writes = BucketRate(*settings.arm_read_bucket), BucketRate(*settings.arm_write_bucket)
    max_pause_s = settings.retry_after_max.total_seconds()
    key = (settings.arm_endpoint.lower().rstrip("/"), reads, writes, max_pause_s)
    return PROCESS.get("pacer", key, lambda: Pacer(reads, writes, max_pause_s=max_pause_s))


def run_deadline(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Deadline:
    """The time budget of a run starting now (BACKUPWARDEN_TIME_BUDGET): a flow given it stops
    taking new work when `near_end` and hands the rest on, instead of being stopped by the host."""
    return Deadline.start(settings.time_budget, clock)


def forget_shared_pacers() -> None:
    """Every later pacer starts with full buckets, as in a fresh process (for tests)."""
    PROCESS.forget("pacer")


def build_webhook_validator(settings: Settings) -> WebhookTokenValidator | None:
    """The secure-webhook token check when BACKUPWARDEN_WEBHOOK_AUDIENCE is set; None when it is not.

    The tenant's signing keys are kept per (OpenID configuration, trust store) across invocations.
    """
    if settings.webhook_audience is None:
        return None
    if settings.tenant_id is None:  # Settings.from_env refuses this; a hand-made Settings might not
        raise ValueError("BACKUPWARDEN_TENANT_ID is needed with BACKUPWARDEN_WEBHOOK_AUDIENCE")
    url = settings.openid_configuration
    if url is None:
        raise ValueError("BACKUPWARDEN_TENANT_ID or BACKUPWARDEN_OPENID_CONFIGURATION_URL is needed")
    verify = settings.connection_verify
    keys = PROCESS.get("signing keys", (url, verify), lambda: SigningKeys(url, HttpsJsonFetcher(verify)))
    return WebhookTokenValidator(settings.webhook_audience, settings.tenant_id, keys)


def build_subscription_scope(settings: Settings, clients: AzureClients) -> SubscriptionScope:
    """BACKUPWARDEN_SUBSCRIPTIONS, or every enabled subscription the identity can see."""
    return SubscriptionScope(settings.subscriptions, clients.subscriptions)


def build_sweep(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = utc_now,
    workers: int | None = None,
) -> Sweep:
    """`now` is the wall clock in Azure; the demo and the tests pass the emulator's clock.
    `workers`: candidates handled at a time in this process (default SweepConfig's).

    "Backup now" sends the POST alone: the job of each trigger is learnt from the job list later
    (the ledger keeps the trigger unconfirmed until then), two requests per stuck VM (its
    verification read and the POST)."""
    recovery = _recovery_services(settings, clients, read_triggered_job_id=False)
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
        call_timeout=settings.call_timeout,
    )
    if workers is not None:
        config = replace(config, workers=workers)
    return Sweep(discovery, recovery, ledger, build_subscription_scope(settings, clients), config, now=now)


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
    now: Callable[[], datetime] = utc_now,
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
    now: Callable[[], datetime] = utc_now,
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
    return SweepWorker(sweep_for, slots_for, queue=build_sweep_queue(settings, clients))


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


def _recovery_services(
    settings: Settings, clients: AzureClients, *, read_triggered_job_id: bool = True
) -> RecoveryServices:
    return RecoveryServices(
        clients.backup,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
        read_triggered_job_id=read_triggered_job_id,
    )


def build_inventory_reader(
    settings: Settings,
    clients: AzureClients,
    *,
    now: Callable[[], datetime] = utc_now,
    progress: Callable[[str], None] = lambda _message: None,
) -> InventoryReader:
    """The scope's protection state in bulk through Resource Graph, or vault by vault where Resource
    Graph is not allowed (BACKUPWARDEN_DISCOVERY=vaults)."""
    if settings.discovery is DiscoveryMode.VAULTS:
        return VaultInventoryReader(
            clients.compute, clients.recovery_services, clients.backup, now=now, progress=progress
        )
    return ProtectionInventoryReader(clients.resource_graph(), clients.backup, progress=progress)


def _state_rules(settings: Settings) -> StateRules:
    return StateRules(
        grace_period=settings.grace_period,
        enroll_existing=settings.enroll_existing,
        failure_classes=settings.failure_classes,
    )


def build_coverage(
    settings: Settings,
    clients: AzureClients,
    *,
    now: Callable[[], datetime] = utc_now,
    progress: Callable[[str], None] = lambda _message: None,
) -> Coverage:
    """The read-only coverage scan: bulk reads, every VM classified, the figures; nothing written."""
    reader = build_inventory_reader(settings, clients, now=now, progress=progress)
    rules = _state_rules(settings)
    return Coverage(reader, build_subscription_scope(settings, clients), rules, now=now)


def build_reconciler(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = utc_now,
    progress: Callable[[str], None] = lambda _message: None,
) -> Reconciler:
    """The coverage read, then each proposed action through the ledger, with the sweep's daily
    budget and per-run cap."""
    reader = build_inventory_reader(settings, clients, now=now, progress=progress)
    rules = _state_rules(settings)
    config = ReconcileConfig(
        daily_budget=settings.daily_budget,
        max_triggers_per_run=settings.max_triggers_per_run,
        recovery_point_expiry=timedelta(days=settings.recovery_point_expiry_days),
        dry_run=settings.dry_run if dry_run is None else dry_run,
        call_timeout=settings.call_timeout,
    )
    # the job of each Backup now is learnt from the job list later: one request per trigger
    # (docs/coverage.md, "Requests per VM acted on")
    recovery = _recovery_services(settings, clients, read_triggered_job_id=False)
    ledger = ensured_ledger(settings, clients, now)
    protection = Protection(
        clients.backup,
        recovery,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
    )
    step = ProtectStep(
        protection,
        recovery,
        ledger,
        daily_budget=settings.daily_budget,
        recovery_point_expiry=config.recovery_point_expiry,
        triggered_by=RECONCILE_TRIGGERED_BY,
        now=now,
    )
    enrolment = Enrolment(
        vaults=Inventory(clients.compute, clients.recovery_services).vaults,
        rules=settings.vault_rules,
        reads=EnrolmentReads(clients.compute, clients.backup),
        restrictions=PolicyRestrictionsCheck(clients.compute),
        step=step,
    )
    return Reconciler(
        reader,
        build_subscription_scope(settings, clients),
        rules,
        recovery,
        ledger,
        config,
        enrolment,
        now=now,
    )


def build_discovery(
    settings: Settings,
    clients: AzureClients,
    recovery: RecoveryServices,
    *,
    now: Callable[[], datetime] = utc_now,
) -> Discovery:
    """The discovery strategy BACKUPWARDEN_DISCOVERY names."""
    if settings.discovery is DiscoveryMode.VAULTS:
        return VaultsDiscovery(clients.recovery_services, clients.compute, recovery, now=now)
    return ResourceGraphDiscovery(clients.resource_graph())


PROTECT_CLAIM_TTL = timedelta(minutes=15)


def build_protect_vm(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = utc_now,
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


def build_protect_queue(settings: Settings, clients: AzureClients) -> WorkQueue:
    """BACKUPWARDEN_PROTECT_QUEUE; created (if missing) the first time these clients are asked for it."""
    queue = WorkQueue(clients.work_queue(settings.protect_queue))
    clients.ensure_once(f"queue {settings.protect_queue}", queue.ensure)
    return queue


def enqueue_work_item(
    settings: Settings, clients: AzureClients, item: NewVmWorkItem, delay_s: int = 0
) -> None:
    build_protect_queue(settings, clients).send(item.to_json(), delay_s)


def requeue_work_item(settings: Settings, clients: AzureClients, item: NewVmWorkItem) -> None:
    """Check a still-provisioning VM again later: a new message, invisible for the recheck delay."""
    enqueue_work_item(settings, clients, item, delay_s=settings.provisioning_recheck_s)


def build_alert_intake(settings: Settings, clients: AzureClients) -> AlertIntake:
    """The alert webhook's intake. Its table and queue are created by the first notification that finds
    them missing, inside the intake, so that a Storage failure then is answered 503 (retried)."""
    dedup = AlertDedup(clients.alert_dedup_table())
    return AlertIntake(dedup, WorkQueue(clients.work_queue(settings.remediation_queue)))


def build_action_recorder(
    settings: Settings, clients: AzureClients, *, now: Callable[[], datetime] = utc_now
) -> ActionRecorder:
    """Every decision of a run into the outbox, on its way to BackupAutomationActions_CL."""
    outbox = ensured_outbox(settings, clients, now)
    return ActionRecorder(outbox, now=now)


def build_coverage_recorder(
    settings: Settings, clients: AzureClients, *, now: Callable[[], datetime] = utc_now
) -> CoverageRecorder:
    """A coverage run's figures into the outbox, on their way to BackupCoverage_CL."""
    return CoverageRecorder(ensured_outbox(settings, clients, now), target=settings.coverage_target)


def build_outcome_shipping(
    settings: Settings, clients: AzureClients, *, now: Callable[[], datetime] = utc_now
) -> OutcomeShipping:
    if not settings.dcr_immutable_id:
        raise SettingsError("BACKUPWARDEN_DCR_IMMUTABLE_ID: missing; needed to send records to Log Analytics")
    outbox = ensured_outbox(settings, clients, now)
    ledger = ensured_ledger(settings, clients, now)
    collector = JobOutcomeCollector(
        functools.partial(query_rows, clients.resource_graph()),
        ledger,
        outbox,
        build_subscription_scope(settings, clients),
        overlap=settings.jobs_overlap,
        now=now,
    )
    shipper = Shipper(outbox, LogsUploader(clients.logs_ingestion(), settings.dcr_immutable_id))
    return OutcomeShipping(collector, shipper, outbox, call_timeout=settings.call_timeout)


def report_query(settings: Settings, clients: AzureClients) -> LogsQuery:
    """The workspace's query API for the report; SettingsError naming the setting when none is configured."""
    if not settings.workspace_id:
        raise SettingsError(
            "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: missing; needed to query Log Analytics for the report"
        )
    return LogsQuery(clients.logs_query(), settings.workspace_id)


def build_remediation(
    settings: Settings,
    clients: AzureClients,
    *,
    dry_run: bool | None = None,
    now: Callable[[], datetime] = utc_now,
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
