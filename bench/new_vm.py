"""New VMs: event-to-backup-job latency and the automation's own overhead (docs/benchmarks.md).

`.venv/bin/python -m bench.new_vm [--vms 200] [--subscriptions 4] [--workers 16] [--time-scale 60] ...`
(`--vms 40 --step-s 4` for a quick check)

One run, in three parts, so that the figures measure the path and not the machine:
- calibration: a fixed pure-Python workload timed in this process (bench/calibration.py), before and
  after, quoted beside the figures as the machine's speed;
- capacity: steps of VMs at rising arrival rates until the workers saturate (bench/new_vm_capacity.py);
- the measured run: `--vms` VMs created evenly at half that capacity (or at `--rate` VMs/s), whose
  figures are the table below. The estate keeps the ramp's VMs; each batch's VMs have their own names.

What runs, the way production runs it:
- the emulator as `python -m emulator serve` in its own process (ARM does not share our interpreter
  lock), over HTTPS, its clock at `--time-scale` emulated seconds per real second, with the latency
  model on (`--latency-ms` per request, 50 ms for discovery and the backup status check) and ARM
  throttling on; timings: container refresh 15 s, configure protection 35 s, backup operation 0 s,
  `Retry-After: 60` (emulated seconds; the emulator sends them as real seconds);
- `--subscriptions` subscriptions, each with one vault per region its VMs use; Azurite for the ledger;
- VMs created through the emulator's admin API, evenly at a batch's rate (real VMs/s). Each create
  publishes the duplicate `ResourceWriteSuccess` pair, which the emulator's Event Grid delivers to a
  webhook here, as it would to the Event Grid trigger;
- every delivered event, duplicates included, is parsed as the trigger parses it and becomes the
  NewVmWorkItem JSON the Storage queue would carry, on an in-process queue served by `--workers` threads
  (the queue trigger's batch concurrency). Each worker does what `functions.new_vms.protect_vm` does
  per message: fresh `AzureClients`, `build_protect_vm`, `ProtectVm.handle`, `ActionRecorder.record`. A
  requeued item comes back after BACKUPWARDEN_PROVISIONING_RECHECK_S, a transient failure after the
  queue's visibility timeout (1 min; at most 5 deliveries), both scaled;
- settings are production's, their durations scaled like the emulator's clock: the operation poll
  interval (1 s, so 17 ms at 60x; `--poll-interval` overrides) and the refill of the client-side ARM
  token buckets.

Definitions, all in real (unscaled) seconds:
- latency(VM) = the moment the worker that started the VM's initial backup has its job id (its
  `handle` returned the outcome carrying `job_id`) minus the VM's create event time (the earliest
  `eventTime` of its events, mapped from the emulated clock to real time).
- service(VM) = the time the emulator imposed on the shortest possible run of the same requests.
  Over the VM's critical path (the requests of the handle call that took the backup; when a
  duplicate took it after another call had protected the VM, that call's requests and the
  duplicate's from its backup POST on): for each asynchronous operation started (container
  refresh, configure protection, backup) max(its emulated duration / time scale, the latency-model
  delay of the request that started it) plus the delay of one final poll; plus the latency-model
  delay of every other request except polls (each try counts).
- overhead(VM) = latency - service: Event Grid delivery, the wait in the queue, polls later than the
  operation's end, ledger round trips, client setup, TLS, CPU time. The table splits it into
  delivery (event time to webhook), queue wait (webhook to a worker starting the item), poll slack
  (per operation, from its end to the arrival of the poll that saw it ended) and the rest;
  processing overhead = overhead - queue wait: what the path itself adds.
Percentiles are nearest-rank over the measured VMs. Duplicates count VMs, the ramp's included, whose
protected item was PUT more than once, or whose backup was POSTed more than once, in the emulator's
request log (429s excluded: the service never acted on them).

The last stdout line is one JSON object: events, p50/p99 overhead, duplicate PUTs and triggers,
p50/p99 latency, ARM requests and 429s (of the measured run), p50/p99 queue wait and processing
overhead, capacity_vms_per_s, measured_rate (VMs/s as created) and calibration.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.app import build_action_recorder, build_protect_vm
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.settings import Settings
from bench.calibration import Calibration, calibrate
from bench.new_vm_capacity import Load, Ramp, RampConfig, find_capacity, load_of, percentile, render_ramp
from bench.new_vm_harness import (
    ClockMap,
    EmulatorProcess,
    EventInbox,
    Handled,
    Received,
    RequestRecorder,
    SentRequest,
    WorkQueue,
    protect_worker,
)
from devtools.demo import demo_settings
from emulator import Emulator
from emulator.azurite import Azurite
from emulator.core.realism import Latency
from emulator.generator import subscription_id
from emulator.recoveryservices.urls import FABRIC, ITEM, VAULT

REGIONS = ("westeurope", "northeurope", "eastus")
TIMINGS_S = {"refresh_containers_s": 15, "configure_operation_s": 35, "backup_operation_s": 0}
RETRY_AFTER_S = 60  # what Azure sends on these operations (azure-facts §3)
SLOW_ROUTES_MS = {"backupProtectableItems": 50, "refreshContainers": 50, "backupStatus": 50}
VISIBILITY_TIMEOUT_S = 60  # host.json: a failed message is visible again after 1 min
TARGET_P99_OVERHEAD_S = 1.0

# (method, route template) of the requests that start an operation, the timing it takes, its polls
REFRESH = ("POST", f"{FABRIC}/refreshContainers")
CONFIGURE = ("PUT", ITEM)
BACKUP = ("POST", f"{ITEM}/backup")
DURATION_OF = {
    REFRESH: "refresh_containers_s",
    CONFIGURE: "configure_operation_s",
    BACKUP: "backup_operation_s",
}
FINAL_POLL = {
    REFRESH: ("GET", f"{FABRIC}/operationResults/{{operationId}}"),
    CONFIGURE: ("GET", f"{VAULT}/backupOperations/{{operationId}}"),
    BACKUP: ("GET", f"{VAULT}/backupOperations/{{operationId}}"),
}
POLLS = frozenset(FINAL_POLL.values())
_ITEM_NAME = re.compile(r"/protectedItems/([^/?]+)", re.IGNORECASE)


@dataclass(frozen=True)
class BenchConfig:
    vms: int = 200
    subscriptions: int = 4
    regions: int = 2
    workers: int = 16
    time_scale: float = 60.0
    rate: float | None = None  # VMs/s of the measured run; None: half the capacity the ramp finds
    ramp: RampConfig = field(default_factory=RampConfig)
    calibration_repetitions: int = 5  # before the run and again after it
    latency_ms: float = 40.0
    poll_interval_s: float | None = None  # real; None = the production default scaled by time_scale
    timeout_s: float = 120.0  # real, per batch, to wait for its last events and work items


# --- the estate ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedVm:
    subscription_id: str
    resource_group: str
    name: str
    location: str


def plan_vms(config: BenchConfig, tag: str, count: int) -> list[PlannedVm]:
    """A batch of VMs named after its tag, round-robin over subscriptions and regions, so each vault
    gets its share."""
    regions = REGIONS[: config.regions]
    return [
        PlannedVm(
            subscription_id(i % config.subscriptions),
            f"rg-new-{i % config.subscriptions}",
            f"vm-{tag}-{i:04d}",
            regions[(i // config.subscriptions) % len(regions)],
        )
        for i in range(count)
    ]


def vm_name(vm_id: str) -> str:
    return vm_id.rsplit("/", 1)[-1]


def latency_model(config: BenchConfig) -> dict[str, Any]:
    # The admin API is the harness talking to the emulator, not Azure: no delay.
    return {"default_ms": config.latency_ms, "routes": {"/_emulator/": 0, **SLOW_ROUTES_MS}}


def bench_scenario(config: BenchConfig, delivery_url: str) -> dict[str, Any]:
    subscriptions = [
        {
            "id": subscription_id(s),
            "name": f"bench-{s}",
            "vaults": [
                {"name": f"rsv-{s}-{region}", "resource_group": "rg-backup", "location": region}
                for region in REGIONS[: config.regions]
            ],
        }
        for s in range(config.subscriptions)
    ]
    return {
        "name": "bench-new-vm",
        "timings": {**TIMINGS_S, "retry_after_s": RETRY_AFTER_S},
        "realism": {"throttle": {"enabled": True}, "latency": latency_model(config)},
        "eventgrid": {"delivery_url": delivery_url, "duplicate_creates": True},
        "subscriptions": subscriptions,
    }


# --- figures ------------------------------------------------------------------------------------
class ServiceModel:
    """What the emulator imposes on a run of requests: operation durations and latency-model delays."""

    def __init__(self, latency: Latency, time_scale: float) -> None:
        self._router = Emulator().router  # the served routes, to name each request's template
        self._latency = latency
        self._duration_s = {start: TIMINGS_S[name] / time_scale for start, name in DURATION_OF.items()}

    def route(self, request: SentRequest) -> tuple[str, str]:
        route, _ = self._router.match(request.method, request.path)
        return request.method, route.template

    def delay_s(self, route: tuple[str, str]) -> float:
        return self._latency.for_route(route[1]) / 1000.0

    def service_s(self, sent: Sequence[SentRequest]) -> float:
        """See the module docstring: operations at their duration, every non-poll request at its delay."""
        total = 0.0
        for request in sent:
            route = self.route(request)
            if route in POLLS:
                continue
            if route in DURATION_OF and request.status == 202:
                total += max(self._duration_s[route], self.delay_s(route)) + self.delay_s(FINAL_POLL[route])
            else:
                total += self.delay_s(route)
        return total

    def round_trips_beyond_delay_s(self, call: Handled) -> list[float]:
        """Per non-poll request after a call's first: time since the previous answer minus its delay
        (the client's work before it, the TLS handshake, serving and answering)."""
        found, previous = [], None
        for request in call.sent:
            route = self.route(request)
            if previous is not None and route not in POLLS:
                found.append(request.answered - previous - self.delay_s(route))
            previous = request.answered
        return found

    def poll_slack_s(self, sent: Sequence[SentRequest]) -> float:
        """Per operation: from its end to the arrival of the last poll that followed it."""
        total, ends_at, last_poll = 0.0, None, None
        for request in [*sent, None]:
            route = self.route(request) if request is not None else None
            if route in POLLS:
                last_poll = request
                continue
            if ends_at is not None and last_poll is not None:
                arrived = last_poll.answered - self.delay_s(self.route(last_poll))
                total += max(0.0, arrived - ends_at)
            ends_at, last_poll = None, None
            if request is not None and route in DURATION_OF and request.status == 202:
                # the operation starts when the request is served, before the latency-model delay
                ends_at = request.answered - self.delay_s(route) + self._duration_s[route]
        return total


@dataclass(frozen=True)
class VmFigures:
    vm_id: str
    latency_s: float
    service_s: float
    delivery_s: float
    queue_wait_s: float
    poll_slack_s: float
    requests: int
    split: bool  # the PUT and the backup POST came from different handle calls

    @property
    def overhead_s(self) -> float:
        return self.latency_s - self.service_s

    @property
    def rest_s(self) -> float:
        return self.overhead_s - self.delivery_s - self.queue_wait_s - self.poll_slack_s

    @property
    def processing_s(self) -> float:
        """The overhead the path itself adds: all of it but the wait for a free worker."""
        return self.overhead_s - self.queue_wait_s


def vm_figures(
    handled: Sequence[Handled], received: Sequence[Received], model: ServiceModel, clock: ClockMap
) -> tuple[list[VmFigures], list[str]]:
    """Figures per VM that reached its backup job, and the ids of the VMs that did not."""
    by_vm: dict[str, list[Handled]] = defaultdict(list)
    for call in handled:
        by_vm[call.item.vm_id].append(call)
    receipts = {r.event_id: r for r in received}
    first_event: dict[str, datetime] = {}
    for r in received:
        first_event[r.vm_id] = min(first_event.get(r.vm_id, r.event_time), r.event_time)
    figures, missing = [], []
    for vm_id, event_time in sorted(first_event.items()):
        found = _figures_of(vm_id, by_vm[vm_id], receipts, clock.real(event_time), model)
        if found is None:
            missing.append(vm_id)
        else:
            figures.append(found)
    return figures, missing


def _figures_of(
    vm_id: str, calls: list[Handled], receipts: dict[str, Received], event_at: float, model: ServiceModel
) -> VmFigures | None:
    producing = min((c for c in calls if c.outcome.job_id), key=lambda c: c.finished, default=None)
    if producing is None:
        return None
    sent = list(producing.sent)
    first = producing
    configuring = [c for c in calls if c is not producing and _sent(c, CONFIGURE, model)]
    if configuring:
        # Another call protected the VM and this one (a duplicate resuming) took the backup: the path
        # is that call's requests, then this one's from its backup POST on (the rest overlapped).
        first = max(configuring, key=lambda c: c.started)
        backup_at = next(i for i, r in enumerate(producing.sent) if model.route(r) == BACKUP)
        sent = [*first.sent, *producing.sent[backup_at:]]
    receipt = receipts[first.item.event_id].at
    return VmFigures(
        vm_id=vm_id,
        latency_s=producing.finished - event_at,
        service_s=model.service_s(sent),
        delivery_s=receipt - event_at,
        queue_wait_s=first.started - receipt,
        poll_slack_s=model.poll_slack_s(sent),
        requests=len(sent),
        split=first is not producing,
    )


def _sent(call: Handled, route: tuple[str, str], model: ServiceModel) -> bool:
    return any(model.route(r) == route and r.status == 202 for r in call.sent)


@dataclass(frozen=True)
class Writes:
    """The protection PUTs and backup POSTs the service saw, per protected item (429s excluded)."""

    puts: Counter[str]
    posts: Counter[str]

    @classmethod
    def of(cls, entries: Sequence[dict[str, Any]]) -> Writes:
        puts: Counter[str] = Counter()
        posts: Counter[str] = Counter()
        for entry in entries:
            found = _ITEM_NAME.search(entry["path"])
            if entry["status"] == 429 or found is None:
                continue
            route = (entry["method"], entry["route"])
            if route == CONFIGURE:
                puts[found.group(1).lower()] += 1
            elif route == BACKUP:
                posts[found.group(1).lower()] += 1
        return cls(puts, posts)

    @property
    def duplicate_puts(self) -> int:
        """VMs whose protected item was PUT more than once."""
        return sum(1 for n in self.puts.values() if n > 1)

    @property
    def duplicate_triggers(self) -> int:
        """VMs whose backup was POSTed more than once."""
        return sum(1 for n in self.posts.values() if n > 1)


# --- the run ------------------------------------------------------------------------------------
@dataclass
class RunResult:
    config: BenchConfig
    poll_interval_s: float
    before: Calibration  # the machine's speed before the run
    after: Calibration  # and after it
    ramp: Ramp | None  # None when --rate set the measured run's rate
    measured: Load  # the measured run's rate, queue and workers
    events: int  # of the measured run
    figures: list[VmFigures]
    missing: list[str]
    outcomes: Counter[str]
    transient_failures: int
    poisoned: int
    requests: int  # of the measured run
    throttled_429: int
    writes: Writes  # the whole run's, ramp included
    wall_s: float
    round_trip_beyond_delay_s: float  # median over the requests of every handle
    notes: list[str] = field(default_factory=list)

    @property
    def calibration(self) -> Calibration:
        return self.before + self.after

    @property
    def ramp_missing(self) -> int:
        """Ramp VMs without their initial backup job."""
        return sum(step.vms - step.with_job for step in self.ramp.steps) if self.ramp else 0


@dataclass
class Batches:
    """Creates batches of VMs at a rate and waits for the queue to drain after each: the ramp's steps,
    then the measured run."""

    config: BenchConfig
    emulator: EmulatorProcess
    inbox: EventInbox
    work: WorkQueue
    created: int = 0
    notes: list[str] = field(default_factory=list)

    def run(self, tag: str, vms: int, rate: float) -> tuple[set[str], Load]:
        """The batch's VM names and what it did to the queue."""
        plan = plan_vms(self.config, tag, vms)
        created = create_vms(self.emulator, plan, rate)
        self.created += vms
        self.notes += _drain(self.inbox, self.work, 2 * self.created, self.config.timeout_s)
        names = {vm.name for vm in plan}
        return names, load_of(rate, created, calls_of(names, self.work.handled), self.config.workers)

    def load(self, tag: str, vms: int, rate: float) -> Load:
        return self.run(tag, vms, rate)[1]


def calls_of(names: set[str], handled: Sequence[Handled]) -> list[Handled]:
    return [call for call in list(handled) if vm_name(call.item.vm_id) in names]


def run(config: BenchConfig) -> RunResult:
    began = time.monotonic()
    before = calibrate(config.calibration_repetitions)
    recorder = RequestRecorder()
    recheck_s = Settings().provisioning_recheck_s
    work = WorkQueue(config.workers, recheck_s / config.time_scale, VISIBILITY_TIMEOUT_S / config.time_scale)
    with (
        Azurite() as azurite,
        EventInbox(lambda written: work.put(NewVmWorkItem.from_event(written).to_json())) as inbox,
        EmulatorProcess(bench_scenario(config, inbox.url), config.time_scale) as emulator,
    ):
        storage = azurite.connection_string
        settings = bench_settings(config, demo_settings(emulator.endpoint, emulator.ca_bundle, storage))
        clock = ClockMap.of(emulator)
        warm_up(settings, clock, emulator, config.subscriptions)
        batches = Batches(config, emulator, inbox, work)
        with work.running(protect_worker(settings, recorder, clock.emulated_now)):
            ramp = None if config.rate else find_capacity(config.ramp, batches.load)
            ramp_log = requests_log(emulator)
            emulator.admin("DELETE", "/_emulator/requests")
            rate = config.rate or (ramp.capacity / 2 if ramp else math.nan)
            if not math.isfinite(rate) or rate <= 0:
                raise RuntimeError(f"the ramp found no capacity to measure at: {ramp}")
            names, measured = batches.run("m", config.vms, rate)
        log = requests_log(emulator)
    after = calibrate(config.calibration_repetitions)
    model = ServiceModel(Latency.from_dict(latency_model(config)), config.time_scale)
    handled = calls_of(names, work.handled)
    received = [r for r in inbox.received if vm_name(r.vm_id) in names]
    figures, missing = vm_figures(handled, received, model, clock)
    notes = batches.notes
    earliest = min((f.delivery_s for f in figures), default=0.0)
    if earliest < -0.005:
        notes.append(f"the clock mapping is off: an event arrived {-earliest:.3f} s before its eventTime")
    return RunResult(
        config=config,
        poll_interval_s=settings.operation_poll_interval_s,
        before=before,
        after=after,
        ramp=ramp,
        measured=measured,
        events=len(received),
        figures=figures,
        missing=missing,
        outcomes=Counter(h.outcome.result.value for h in handled),
        transient_failures=sum(1 for h in handled if h.transient),
        poisoned=len(work.poisoned),
        requests=len(log),
        throttled_429=sum(1 for e in log if e["status"] == 429),
        writes=Writes.of(ramp_log + log),
        wall_s=time.monotonic() - began,
        round_trip_beyond_delay_s=statistics.median(
            [gap for call in handled for gap in model.round_trips_beyond_delay_s(call)] or [math.nan]
        ),
        notes=notes,
    )


def requests_log(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    """The ARM requests the emulator served since its log was last cleared (its admin API left out)."""
    log = emulator.admin("GET", "/_emulator/requests")["requests"]
    return [e for e in log if not e["route"].startswith("/_emulator/")]


def bench_settings(config: BenchConfig, settings: Settings) -> Settings:
    """Production's settings, with their durations scaled like the emulator's clock: the operation poll
    interval (divided by the time scale) and the refill of the client-side ARM token buckets
    (multiplied: the emulator's buckets refill in emulated seconds)."""
    interval = config.poll_interval_s or settings.operation_poll_interval_s / config.time_scale
    changes: dict[str, Any] = {"operation_poll_interval_s": interval}
    for name in ("arm_read_bucket", "arm_write_bucket"):
        if hasattr(settings, name):
            capacity, refill = getattr(settings, name)
            changes[name] = (capacity, refill * config.time_scale)
    return replace(settings, **changes)


def warm_up(settings: Settings, clock: ClockMap, emulator: EmulatorProcess, subscriptions: int) -> None:
    """Import and connect once (SDK models, TLS, the ledger table), then forget those requests."""
    with AzureClients(settings) as clients:
        build_protect_vm(settings, clients, now=clock.emulated_now)  # creates the ledger table
        build_action_recorder(settings, clients, now=clock.emulated_now)  # creates the outbox table
        for index in range(subscriptions):
            list(clients.recovery_services(subscription_id(index)).vaults.list_by_subscription_id())
    emulator.admin("DELETE", "/_emulator/requests")


def create_vms(emulator: EmulatorProcess, plan: Sequence[PlannedVm], rate: float) -> list[float]:
    """Create the VMs evenly at `rate` VMs/s; each create publishes its events. Returns the moments
    (time.monotonic()) each create was sent."""
    start = time.monotonic()
    created = []
    for index, vm in enumerate(plan):
        wait = start + index / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        created.append(time.monotonic())
        emulator.admin(
            "POST",
            "/_emulator/vms",
            {
                "subscription_id": vm.subscription_id,
                "resource_group": vm.resource_group,
                "name": vm.name,
                "location": vm.location,
            },
        )
    return created


def _drain(inbox: EventInbox, work: WorkQueue, events: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while inbox.count() < events and time.monotonic() < deadline:
        time.sleep(0.05)
    notes = []
    if inbox.count() < events:
        notes.append(f"only {inbox.count()} of {events} events arrived before the timeout")
    if not work.wait_until_idle(max(1.0, deadline - time.monotonic())):
        notes.append("the queue still had work items at the timeout")
    return notes


# --- the report ---------------------------------------------------------------------------------
ROWS: list[tuple[str, Callable[[VmFigures], float]]] = [
    ("event -> backup job latency", lambda f: f.latency_s),
    ("emulated service time", lambda f: f.service_s),
    ("automation overhead", lambda f: f.overhead_s),
    ("  Event Grid delivery", lambda f: f.delivery_s),
    ("  queue wait", lambda f: f.queue_wait_s),
    ("  poll slack", lambda f: f.poll_slack_s),
    ("  rest (ledger, clients, TLS, CPU)", lambda f: f.rest_s),
    ("processing overhead (no queue wait)", lambda f: f.processing_s),
]


def render(result: RunResult) -> str:
    config, figures, writes, measured = result.config, result.figures, result.writes, result.measured
    vaults = config.subscriptions * config.regions
    lines = [
        f"machine, before the run: {result.before.describe()}",
        f"machine, after the run:  {result.after.describe()}",
        "",
    ]
    if result.ramp is not None:
        lines += [*render_ramp(result.ramp), ""]
    chosen = "half the capacity" if result.ramp is not None else "--rate"
    lines += [
        f"New VMs: {config.vms} VMs ({result.events} events, duplicates included), {config.subscriptions} "
        f"subscriptions x {config.regions} regions ({vaults} vaults), {config.workers} workers",
        f"created at {measured.asked_rate:.2f} VMs/s ({chosen}; {measured.arrival_rate:.2f} as created), "
        f"time scale {config.time_scale:g}, latency {config.latency_ms:g} ms/request "
        f"({max(SLOW_ROUTES_MS.values())} ms discovery), operation polls every "
        f"{result.poll_interval_s * 1000:.0f} ms at most",
        "",
        f"{'per VM, real seconds':<36}{'p50':>8}{'p99':>8}{'max':>8}",
    ]
    for label, value in ROWS:
        values = [value(f) for f in figures]
        worst = max(values, default=float("nan"))
        lines.append(f"{label:<36}{percentile(values, 50):>8.3f}{percentile(values, 99):>8.3f}{worst:>8.3f}")
    per_vm = sum(f.requests for f in figures) / max(1, len(figures))
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(result.outcomes.items()))
    p99 = percentile([f.overhead_s for f in figures], 99)
    verdict = "met" if p99 <= TARGET_P99_OVERHEAD_S else "MISSED"
    missing = f" (missing: {', '.join(result.missing[:3])})" if result.missing else ""
    ramp_vms = sum(step.vms for step in result.ramp.steps) if result.ramp else 0
    lines += [
        "",
        f"VMs with their initial backup job: {len(figures)} of {config.vms}{missing}; taken by the "
        f"duplicate event's worker after another had protected the VM: {sum(f.split for f in figures)}",
        f"work items: {outcomes}; transient failures {result.transient_failures}, poison {result.poisoned}",
        f"ARM requests: {result.requests} ({per_vm:.1f} per VM on its critical path), "
        f"429s: {result.throttled_429}; a request's round trip beyond its latency-model delay: "
        f"{result.round_trip_beyond_delay_s * 1000:.0f} ms (median)",
        f"workers busy {measured.busy:.0%} of the time from the first item to the last; "
        f"queue wait p90 of every delivery {measured.wait_p90_s:.3f} s",
        f"the whole run ({config.vms + ramp_vms} VMs, the ramp's {ramp_vms} included, "
        f"{result.ramp_missing} of them without their backup job): protection PUTs "
        f"{sum(writes.puts.values())} for {len(writes.puts)} VMs, backup POSTs "
        f"{sum(writes.posts.values())} for {len(writes.posts)} VMs; duplicate PUTs: {writes.duplicate_puts}, "
        f"duplicate triggers: {writes.duplicate_triggers}",
        f"target overhead p99 <= {TARGET_P99_OVERHEAD_S:g} s: {verdict} ({p99:.3f} s); "
        f"wall time {result.wall_s:.1f} s",
        *result.notes,
    ]
    return "\n".join(lines)


def summary(result: RunResult) -> dict[str, Any]:
    def figure(p: float, value: Callable[[VmFigures], float]) -> float:
        return round(percentile([value(f) for f in result.figures], p), 3)

    calibration = result.calibration
    return {
        "events": result.events,
        "p50_overhead_s": figure(50, lambda f: f.overhead_s),
        "p99_overhead_s": figure(99, lambda f: f.overhead_s),
        "duplicate_puts": result.writes.duplicate_puts,
        "duplicate_triggers": result.writes.duplicate_triggers,
        "p50_latency_s": figure(50, lambda f: f.latency_s),
        "p99_latency_s": figure(99, lambda f: f.latency_s),
        "requests": result.requests,
        "throttled_429": result.throttled_429,
        "p50_queue_wait_s": figure(50, lambda f: f.queue_wait_s),
        "p99_queue_wait_s": figure(99, lambda f: f.queue_wait_s),
        "p50_processing_overhead_s": figure(50, lambda f: f.processing_s),
        "p99_processing_overhead_s": figure(99, lambda f: f.processing_s),
        "capacity_vms_per_s": round(result.ramp.capacity, 2) if result.ramp else None,
        "capacity_is_lower_bound": result.ramp.saturated_at is None if result.ramp else None,
        "measured_rate": round(result.measured.arrival_rate, 2),
        "calibration": {
            "ops_per_s": round(calibration.median),
            "vs_reference": round(calibration.ratio, 2),
            "before_ops_per_s": round(result.before.median),
            "after_ops_per_s": round(result.after.median),
            "load_average": [round(result.before.load_average, 2), round(result.after.load_average, 2)],
        },
    }


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    default, ramp = BenchConfig(), RampConfig()
    summary_line = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.new_vm", description=summary_line)
    add = parser.add_argument
    add("--vms", type=int, default=default.vms, help="VMs in the measured run")
    add("--subscriptions", type=int, default=default.subscriptions)
    add("--regions", type=int, choices=range(1, len(REGIONS) + 1), default=default.regions)
    add("--workers", type=int, default=default.workers, help="the queue trigger's batch concurrency")
    add("--time-scale", type=float, default=default.time_scale, help="emulated seconds per real second")
    add("--rate", type=float, default=None, help="VMs/s of the measured run, no ramp")
    add("--first-rate", type=float, default=ramp.first_rate, help="VMs/s of the ramp's first step")
    add("--max-rate", type=float, default=ramp.max_rate, help="VMs/s at which the ramp stops")
    add("--step-s", type=float, default=ramp.step_s, help="real s of arrivals per ramp step")
    add("--saturation-wait", type=float, default=ramp.saturation_wait_s, help="s of queue wait p90")
    add("--calibration-repetitions", type=int, default=default.calibration_repetitions)
    add("--latency-ms", type=float, default=default.latency_ms, help="default delay per ARM request")
    add("--poll-interval", type=float, default=None, help="real s; default: production's / time scale")
    add("--timeout", type=float, default=default.timeout_s, help="real s to wait for a batch's last work")
    args = parser.parse_args(argv)
    positive = (args.vms, args.subscriptions, args.workers, args.calibration_repetitions)
    if min(positive) < 1 or min(args.time_scale, args.first_rate, args.step_s) <= 0:
        parser.error(
            "--vms, --subscriptions, --workers, --calibration-repetitions, --time-scale, --first-rate "
            "and --step-s must be positive"
        )
    if args.max_rate < args.first_rate or (args.rate is not None and args.rate <= 0):
        parser.error("--max-rate must be at least --first-rate, and --rate positive")
    return BenchConfig(
        vms=args.vms,
        subscriptions=args.subscriptions,
        regions=args.regions,
        workers=args.workers,
        time_scale=args.time_scale,
        rate=args.rate,
        ramp=replace(
            ramp,
            first_rate=args.first_rate,
            max_rate=args.max_rate,
            step_s=args.step_s,
            saturation_wait_s=args.saturation_wait,
        ),
        calibration_repetitions=args.calibration_repetitions,
        latency_ms=args.latency_ms,
        poll_interval_s=args.poll_interval,
        timeout_s=args.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("azure").setLevel(logging.ERROR)
    result = run(parse_args(argv))
    print(render(result))
    print(json.dumps(summary(result)))
    writes = result.writes
    complete = not result.missing and not result.ramp_missing
    return 0 if complete and not writes.duplicate_puts and not writes.duplicate_triggers else 1


if __name__ == "__main__":
    sys.exit(main())
