"""The sweep at scale: fan-out through the sweep queue, paced to ARM's buckets (docs/benchmarks.md).

`python -m bench.sweep --scenario throttle|latency|memory [--processes P] [--workers N] [--batch B]
[--time-scale X] [--skip-baseline]`

What runs, the way production runs it:
- the emulator in a SUBPROCESS (`python -m emulator serve --time-scale X`), so the planner's memory
  is this process's alone, with a `generate:` estate, its latency model and ARM's token buckets
  (reads 250 / 25 per s, writes 200 / 10 per s, per subscription, on the emulated clock) on;
  Azurite (node) holds the ledger and the sweep queue;
- this process plans as the timer does (`build_sweep_fanout`: one paged Resource Graph query, work
  items of up to B candidates of one vault on the sweep queue) and drains as `python -m backupwarden
  sweep --workers N` does (`LocalDrain`, N threads through `CandidateHandler`: verify, ledger,
  trigger); P - 1 more processes drain the same queue with N threads each, as more Function
  instances would (started and warm before the plan, each waits for the first message). The client's
  buckets are ARM's, scaled by the time scale like every other duration; each process has its own
  and they meet through the servers' `x-ms-ratelimit-remaining-*` headers, as instances do.

Scenarios:
- throttle: 1 subscription, 2 vaults, 2,000 VMs, all stuck; `--time-scale` (default 5) compresses
  the emulated clock. bound = the time ARM's buckets need for the fewest requests possible (per
  stuck VM a verification read and a trigger: "Backup now" sends the POST alone, its job is learnt
  from the job list later): max over reads and writes of
  (requests - capacity) / refill, divided by the time scale. Targets: wall <= 1.25 x bound, 429s <=
  1 % of the requests, no failed or duplicate trigger.
- latency: 10 subscriptions, 50 vaults, 10,000 VMs, 1,000 stuck, 50 ms per request. The naive
  baseline runs first on the same estate (list vaults, list each vault's items, trigger the stuck
  ones one at a time); the estate is then loaded afresh for the fan-out. Targets: >= 10x faster than
  the baseline; requests <= 1.1 x the lower bound (Resource Graph pages + 2 per stuck VM: the
  verification read and the POST).
  `--skip-baseline` runs the fan-out alone, on an estate nothing ran on before (to compare two
  versions of the code: the speedup is then not reported, nor checked).
- memory: 100,000 VMs (10 subscriptions x 10 vaults x 1,000), 10 % stuck; a dry-run plan: discovery
  and the work items on the queue, nothing verified or triggered. Target: peak RSS <= 300 MB (this
  process's VmHWM, reset before planning); the time is reported.

wall = from the start of the plan until the last process finished draining. The app's own CPU per
stuck VM: this process's CPU time during the phase plus the other instances' (children reaped
during it), in milliseconds, divided by the stuck VMs (the emulator's and Azurite's CPU are not the
app's); on 2 cores it is what bounds the latency scenario. Every scenario that
triggers checks that each stuck VM got exactly one accepted "Backup now" (the emulator's request
log; 429s are never served) and that no outcome failed. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.app import build_sweep_fanout, build_sweep_queue, build_sweep_worker
from backupwarden.cli.drain import DrainConfig, LocalDrain, sweep_and_drain
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.sweep.messages import DEFAULT_BATCH_SIZE
from backupwarden.settings import Settings
from bench.outcomes import _first_json_line, peak_rss_mb, reset_peak_rss
from emulator.azurite import Azurite
from emulator.generator import subscription_id

ARM_READS = (250, 25.0)  # capacity, refill per emulated second
ARM_WRITES = (200, 10.0)
PAGE_ROWS = 1000  # Resource Graph rows per page
BACKUP_ROUTE = "/protectedItems/{protectedItemName}/backup"
TARGET_BOUND_RATIO = 1.25
TARGET_429_SHARE = 0.01
TARGET_SPEEDUP = 10.0
TARGET_REQUESTS_RATIO = 1.1
TARGET_PEAK_RSS_MB = 300.0
SETTINGS_ENV = "BENCH_SWEEP_SETTINGS"  # the app settings, as JSON, for the other instances
READY = "ready"  # a drain instance's first stdout line


@dataclass(frozen=True)
class Shape:
    subscriptions: int
    vaults_per_subscription: int
    vms_per_vault: int
    stuck_percent: float
    latency_ms: float
    time_scale: float

    @property
    def stuck(self) -> int:
        per_vault = math.floor(self.vms_per_vault * self.stuck_percent / 100 + 0.5)
        return self.subscriptions * self.vaults_per_subscription * per_vault

    @property
    def vms(self) -> int:
        return self.subscriptions * self.vaults_per_subscription * self.vms_per_vault


SHAPES = {
    "throttle": Shape(1, 2, 1000, 100, 50, 5.0),
    "latency": Shape(10, 5, 200, 10, 50, 1.0),
    "memory": Shape(10, 10, 1000, 10, 0, 1.0),
}


def scenario(shape: Shape) -> dict[str, Any]:
    generate = {
        "subscriptions": shape.subscriptions,
        "vaults_per_subscription": shape.vaults_per_subscription,
        "vms_per_vault": shape.vms_per_vault,
        "stuck_percent": shape.stuck_percent,
    }
    return generated_scenario("bench-sweep", shape.latency_ms, generate)


def generated_scenario(name: str, latency_ms: float, generate: dict[str, Any]) -> dict[str, Any]:
    """A `generate:` estate (with its job history) as the benchmarks load it: starting now, backup jobs
    that outlast the run, ARM's throttling and the latency model on."""
    return {
        "name": name,
        "clock": {"start": datetime.now(UTC).isoformat()},
        "timings": {"backup_operation_s": 0, "backup_job_s": 6 * 3600, "retry_after_s": 60},
        "realism": {"throttle": {"enabled": True}, "latency": {"default_ms": latency_ms}},
        "generate": {**generate, "with_history": True},
    }


# --- the emulator, in its own process ------------------------------------------------------------
@dataclass
class EmulatorProcess:
    endpoint: str
    ca_bundle: str
    pid: int

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(
            method, f"{self.endpoint}/_emulator/{path}", json=body, verify=self.ca_bundle, timeout=300
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "requests")["requests"])


@contextmanager
def emulator_process(workdir: Path, document: dict[str, Any], time_scale: float) -> Iterator[EmulatorProcess]:
    path = workdir / "scenario.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    output = workdir / "emulator.out"
    command = [
        sys.executable,
        "-m",
        "emulator",
        "serve",
        "--scenario",
        str(path),
        "--time-scale",
        str(time_scale),
    ]
    with output.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        described = _first_json_line(output, process, timeout_s=300)
        yield EmulatorProcess(described["endpoint"], described["ca_bundle"], process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def bench_env(emulator: EmulatorProcess, storage: str, shape: Shape) -> dict[str, str]:
    """The app settings of every process of the run (the client's buckets scaled like the clock)."""
    scale = shape.time_scale
    return {
        "BACKUPWARDEN_ARM_ENDPOINT": emulator.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "bench",
        "BACKUPWARDEN_CA_BUNDLE": emulator.ca_bundle,
        "AzureWebJobsStorage": storage,
        "BACKUPWARDEN_SUBSCRIPTIONS": ",".join(subscription_id(s) for s in range(shape.subscriptions)),
        "BACKUPWARDEN_MAX_TRIGGERS_PER_RUN": "100000",
        "BACKUPWARDEN_SWEEP_INLINE_MAX": "0",
        "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S": str(max(0.01, 1.0 / scale)),
        "BACKUPWARDEN_ARM_READ_BUCKET": f"{ARM_READS[0]}/{ARM_READS[1] * scale:g}",
        "BACKUPWARDEN_ARM_WRITE_BUCKET": f"{ARM_WRITES[0]}/{ARM_WRITES[1] * scale:g}",
    }


# --- more worker instances -----------------------------------------------------------------------
@contextmanager
def worker_instances(count: int, env: dict[str, str], workers: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` more processes draining the sweep queue with `workers` threads each, as more Function
    instances would; started and warm (imports done, clients built) before the plan, each waits for
    the queue's first message."""
    command = [sys.executable, "-m", "bench.sweep", "--drain-instance", "--workers", str(workers)]
    processes = [
        subprocess.Popen(
            command, env={**os.environ, SETTINGS_ENV: json.dumps(env)}, stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != READY:
                raise RuntimeError(f"a drain instance did not start: {line or 'no output'}")
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def drain_instance(workers: int) -> int:
    """One more instance: drain the sweep queue until it holds no message, print its outcomes."""
    settings = Settings.from_env(json.loads(os.environ[SETTINGS_ENV]))
    with AzureClients(settings) as clients:
        queue = build_sweep_queue(settings, clients)
        if queue is None:
            raise RuntimeError("no queue service in the settings")
        queue.ensure()
        worker = build_sweep_worker(settings, clients, workers=workers)
        print(READY, flush=True)  # imports done and clients built: a warm instance, as a scaled-out one is
        deadline = time.monotonic() + 300
        while queue.approximate_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = LocalDrain(queue, worker, DrainConfig(workers=workers, retry_delay_s=1)).drain(
            "", sys.maxsize
        )
    outcomes = drained.other_runs
    print(
        json.dumps({"outcomes": Counter(o.result.value for o in outcomes), "failed": failed(outcomes)}),
        flush=True,
    )
    return 0


def instance_outcomes(processes: list[subprocess.Popen[str]]) -> tuple[Counter[str], list[str]]:
    """What the other instances handled: outcome counts and the failed ones' reasons."""
    found: Counter[str] = Counter()
    reasons: list[str] = []
    for process in processes:
        stdout, _ = process.communicate(timeout=600)
        reported = json.loads(stdout.strip().splitlines()[-1])
        found.update(reported["outcomes"])
        reasons.extend(reported["failed"])
    return found, reasons


def failed(outcomes: list[Outcome]) -> list[str]:
    return [
        f"{o.vm_id}: {o.reason} {o.error_code or ''}".strip() for o in outcomes if o.result is Result.FAILED
    ]


# --- CPU -------------------------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds spent during a phase by this process, the other instances (children reaped during
    it), the emulator and Azurite: on 2 cores their sum, not the latency, is what bounds a fast run."""

    def __init__(self, emulator_pid: int) -> None:
        self._pids = {"emulator": emulator_pid, "Azurite": _child_pid("azurite")}
        self._start = self._read()

    def elapsed(self) -> dict[str, float]:
        now = self._read()
        return {name: round(now[name] - self._start[name], 1) for name in now}

    def _read(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "this process": own.ru_utime + own.ru_stime,
            "other instances": children.ru_utime + children.ru_stime,
            **{name: _process_cpu_s(pid) for name, pid in self._pids.items()},
        }


def _process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _child_pid(name: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if parent == os.getpid() and name in command:
            return int(entry.name)
    return None


# --- one run ---------------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    wall_s: float
    requests: int
    statuses: Counter[str]
    posts: Counter[str]  # VM item name -> accepted (202) Backup now POSTs
    outcomes: Counter[str] = field(default_factory=Counter)
    work_items: int = 0
    enqueued: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def throttled(self) -> int:
        return self.statuses.get("429", 0)

    @property
    def duplicates(self) -> int:
        return sum(1 for n in self.posts.values() if n > 1)

    def app_cpu_ms_per_vm(self, stuck: int) -> float | None:
        """This process's and the other instances' CPU milliseconds per stuck VM."""
        if not self.cpu_s or not stuck:
            return None
        return (self.cpu_s["this process"] + self.cpu_s["other instances"]) * 1000 / stuck


def logged(emulator: EmulatorProcess) -> tuple[int, Counter[str], Counter[str]]:
    """(requests, their statuses, accepted Backup now POSTs per item) since the log was cleared."""
    entries = [e for e in emulator.requests() if not e["route"].startswith("/_emulator")]
    posts = Counter(
        e["path"].rsplit("/protectedItems/", 1)[1].split("/", 1)[0].lower()
        for e in entries
        if e["method"] == "POST" and e["route"].endswith(BACKUP_ROUTE) and e["status"] == 202
    )
    return len(entries), Counter(str(e["status"]) for e in entries), posts


@dataclass(frozen=True)
class Drainers:
    processes: int  # this one and processes - 1 more instances
    workers: int  # threads per process


def fanout_phase(
    emulator: EmulatorProcess, env: dict[str, str], drainers: Drainers, batch: int, dry_run: bool
) -> Phase:
    """Plan here (the timer's part), then drain here and in the other instances (the workers' part)."""
    emulator.admin("DELETE", "requests")
    settings = Settings.from_env(env)
    extra = 0 if dry_run else drainers.processes - 1
    with AzureClients(settings) as clients, worker_instances(extra, env, drainers.workers) as instances:
        workers = drainers.workers
        fanout = build_sweep_fanout(settings, clients, dry_run=dry_run, workers=workers, batch_size=batch)
        worker = build_sweep_worker(settings, clients, workers=workers)
        reset = reset_peak_rss()
        cpu = CpuMeter(emulator.pid)
        started = time.perf_counter()
        if dry_run:
            planned = fanout.run()
        else:
            planned, drained = sweep_and_drain(fanout, worker, DrainConfig(workers=workers, retry_delay_s=1))
            if drained.timed_out:
                raise RuntimeError("the drain timed out")
        elsewhere, failed_elsewhere = instance_outcomes(instances)
        wall = time.perf_counter() - started
        spent = cpu.elapsed()
        peak = peak_rss_mb() if reset else float("nan")
    count, statuses, posts = logged(emulator)
    outcomes = Counter(o.result.value for o in planned.report.outcomes) + elsewhere
    for reason in failed(planned.report.outcomes) + failed_elsewhere:
        print(f"failed: {reason}", file=sys.stderr)
    name = f"fan-out ({drainers.processes} x {drainers.workers} workers)" if not dry_run else "plan (dry run)"
    return Phase(
        name, wall, count, statuses, posts, outcomes, planned.work_items, planned.enqueued, peak, spent
    )


def naive_phase(emulator: EmulatorProcess, settings: Settings) -> Phase:
    """List vaults, list each vault's items, trigger the stuck ones one at a time."""
    emulator.admin("DELETE", "requests")
    cpu = CpuMeter(emulator.pid)
    started = time.perf_counter()
    with AzureClients(settings) as clients:
        recovery = RecoveryServices(clients.backup, poll_interval_s=settings.operation_poll_interval_s)
        for subscription in settings.subscriptions:
            for vault in clients.recovery_services(subscription).vaults.list_by_subscription_id():
                ref = VaultRef.parse(str(vault.id))
                for item in list(recovery.protected_items(ref)):
                    properties = item["properties"]
                    if str(properties.get("protectionState")) != "IRPending":
                        continue
                    container = f"iaasvmcontainer;{properties['containerName']}"
                    recovery.trigger_backup(ref, container, str(item["name"]), datetime.now(UTC))
    wall = time.perf_counter() - started
    spent = cpu.elapsed()
    count, statuses, posts = logged(emulator)
    triggered = Counter({"triggered": sum(posts.values())})
    return Phase("naive baseline", wall, count, statuses, posts, triggered, cpu_s=spent)


# --- figures -------------------------------------------------------------------------------------------
def token_bound_s(shape: Shape) -> float:
    """Seconds ARM's buckets need for the fewest requests (1 read, 1 write per stuck VM) per subscription."""
    per_sub = shape.stuck / shape.subscriptions
    reads = max(0.0, (per_sub - ARM_READS[0]) / ARM_READS[1])
    writes = max(0.0, (per_sub - ARM_WRITES[0]) / ARM_WRITES[1])
    return max(reads, writes) / shape.time_scale


def lower_bound_requests(shape: Shape, trigger: bool) -> int:
    pages = math.ceil(shape.stuck / PAGE_ROWS) or 1  # one query: under 250 subscriptions
    return pages + (2 * shape.stuck if trigger else 0)  # the verification read and the POST


def correct(phase: Phase, shape: Shape) -> bool:
    return len(phase.posts) == shape.stuck and phase.duplicates == 0 and not phase.outcomes.get("failed")


def summary(
    scenario_name: str, shape: Shape, run: Phase, baseline: Phase | None, dry_run: bool
) -> dict[str, Any]:
    bound = token_bound_s(shape) if scenario_name == "throttle" else None
    lower = lower_bound_requests(shape, trigger=not dry_run)
    return {
        "scenario": scenario_name,
        "wall_s": round(run.wall_s, 2),
        "bound_s": round(bound, 2) if bound is not None else None,
        "ratio_to_bound": round(run.wall_s / bound, 3) if bound else None,
        "requests": run.requests,
        "lower_bound_requests": lower,
        "requests_ratio": round(run.requests / lower, 3),
        "throttled_429": run.throttled,
        "speedup_vs_baseline": round(baseline.wall_s / run.wall_s, 1) if baseline else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1) if scenario_name == "memory" else None,
        "duplicates": None if dry_run else run.duplicates,
        "app_cpu_ms_per_stuck_vm": _rounded(run.app_cpu_ms_per_vm(shape.stuck)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def render(
    name: str, shape: Shape, phases: list[Phase], figures: dict[str, Any], checks: dict[str, bool]
) -> str:
    vaults = shape.subscriptions * shape.vaults_per_subscription
    head = (
        f"scenario {name}: {shape.subscriptions} subscriptions, {vaults} vaults, {shape.vms:,} VMs, "
        f"{shape.stuck:,} stuck; latency {shape.latency_ms:g} ms; time scale {shape.time_scale:g}"
    )
    rows = [
        (
            "run",
            "wall s",
            "requests",
            "429s",
            "enqueued",
            "work items",
            "app CPU ms/stuck VM",
            "outcomes",
            "peak RSS MB",
        )
    ]
    for phase in phases:
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(phase.outcomes.items()))
        rss = f"{phase.peak_rss_mb:.1f}" if phase.peak_rss_mb else "-"
        app_cpu = phase.app_cpu_ms_per_vm(shape.stuck)
        rows.append(
            (
                phase.name,
                f"{phase.wall_s:.2f}",
                str(phase.requests),
                str(phase.throttled),
                str(phase.enqueued or "-"),
                str(phase.work_items or "-"),
                "-" if app_cpu is None else f"{app_cpu:.1f}",
                outcomes or "-",
                rss,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines = [head, "", *table, ""]
    for phase in phases:
        spent = ", ".join(f"{name} {seconds:.1f}" for name, seconds in phase.cpu_s.items() if seconds)
        lines.append(f"CPU s, {phase.name}: {spent} (sum {sum(phase.cpu_s.values()):.1f})")
    lines.append("")
    for key in (
        "bound_s",
        "ratio_to_bound",
        "lower_bound_requests",
        "requests_ratio",
        "speedup_vs_baseline",
        "peak_rss_mb",
        "duplicates",
    ):
        if figures[key] is not None:
            lines.append(f"{key:<22} {figures[key]}")
    lines.extend(f"{'check ' + check:<22} {'ok' if passed else 'MISSED'}" for check, passed in checks.items())
    return "\n".join(lines)


def checks_for(
    name: str, shape: Shape, run: Phase, figures: dict[str, Any], dry_run: bool
) -> dict[str, bool]:
    found: dict[str, bool] = {}
    if not dry_run:
        found["each stuck VM triggered exactly once"] = correct(run, shape)
    if name == "throttle":
        found[f"wall <= {TARGET_BOUND_RATIO} x bound"] = figures["ratio_to_bound"] <= TARGET_BOUND_RATIO
        found["429s <= 1 % of requests"] = run.throttled <= TARGET_429_SHARE * run.requests
    if name == "latency":
        if figures["speedup_vs_baseline"] is not None:  # None: --skip-baseline
            found[f">= {TARGET_SPEEDUP:g}x the baseline"] = figures["speedup_vs_baseline"] >= TARGET_SPEEDUP
        found[f"requests <= {TARGET_REQUESTS_RATIO} x lower bound"] = (
            figures["requests_ratio"] <= TARGET_REQUESTS_RATIO
        )
    if name == "memory":
        found[f"peak RSS <= {TARGET_PEAK_RSS_MB:g} MB"] = figures["peak_rss_mb"] <= TARGET_PEAK_RSS_MB
        found["every stuck VM planned"] = run.enqueued == shape.stuck
    return found


# --- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SHAPES))
    parser.add_argument(
        "--workers", type=int, default=16, help="drain threads per process (the CLI's --workers)"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="draining processes, like Function instances (default 2)"
    )
    parser.add_argument("--drain-instance", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE, help="candidates per work item")
    parser.add_argument("--time-scale", type=float, default=None, help="emulated seconds per real second")
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="latency: run the fan-out alone (to compare two versions of the code; no speedup figure)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.drain_instance:
        return drain_instance(args.workers)
    if args.scenario is None:
        parser.error("--scenario is required")
    if args.skip_baseline and args.scenario != "latency":
        parser.error("--skip-baseline goes with --scenario latency (the only one with a baseline)")
    shape = SHAPES[args.scenario]
    if args.time_scale is not None:
        shape = Shape(**{**shape.__dict__, "time_scale": args.time_scale})
    dry_run = args.scenario == "memory"

    phases: list[Phase] = []
    baseline = None
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as workdir, Azurite() as azurite:
        document = scenario(shape)
        with emulator_process(Path(workdir), document, shape.time_scale) as emulator:
            env = bench_env(emulator, azurite.connection_string, shape)
            if args.scenario == "latency" and not args.skip_baseline:
                baseline = naive_phase(emulator, Settings.from_env(env))
                phases.append(baseline)
                emulator.admin(
                    "PUT", "scenario", {**document, "clock": {"start": datetime.now(UTC).isoformat()}}
                )
            drainers = Drainers(args.processes, args.workers)
            run = fanout_phase(emulator, env, drainers, args.batch, dry_run)
            phases.append(run)

    figures = summary(args.scenario, shape, run, baseline, dry_run)
    checks = checks_for(args.scenario, shape, run, figures, dry_run)
    if baseline is not None:
        checks["baseline triggered each stuck VM once"] = correct(baseline, shape)
    print(render(args.scenario, shape, phases, figures, checks))
    print(json.dumps(figures))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
