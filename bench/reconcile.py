"""The reconciler at scale: every VM of 100 subscriptions read in bulk and acted on (docs/benchmarks.md).

`python -m bench.reconcile [--vms N] [--subscriptions S] [--latency-ms L] [--enroll-existing MODE]`

What runs, the way `backupwarden coverage --act` runs it:
- the emulator in a SUBPROCESS (`python -m emulator serve`), so the peak RSS is the app's alone, with
  a `generate:` estate in mixed states (MIX: most VMs protected and current; shares unprotected,
  pending their first backup past the grace period, stale, failing with a retryable or a
  non-retryable error, stopped, orphaned), its latency model and ARM's token buckets (reads 250 /
  25 per s, writes 200 / 10 per s, per subscription) and Resource Graph's quota (15 queries per
  5 s) on; Azurite holds the ledger and the outbox;
- this process builds the app through `build_reconciler` and `build_action_recorder` and runs it
  once, recording each decision as the CLI does. BACKUPWARDEN_MAX_TRIGGERS_PER_RUN is 100,000, so the
  per-run cap never stops the run short; ENROLL_EXISTING is `off` (the default: unprotected VMs are
  reported, not acted on) unless `--enroll-existing` says otherwise.

Figures: ARM requests (the emulator's request log) by kind, per acted-on VM (a VM the run
triggered, enrolled or escalated) and per VM written to (triggered or enrolled: an escalation sends
no ARM request, so the first figure falls with the estate's share of escalations); Table Storage
round trips per acted-on VM, ledger and outbox apart (a response hook on the bench's own table
clients); wall time against the bound the limits set for the requests made (Resource Graph's quota
for its queries, then ARM's buckets, as bench/sweep.py computes them, for the busiest
subscription's reads and writes); peak RSS (this process's VmHWM, reset before the run). Targets:
<= 1.5 ARM requests per VM written to, <= 2 ledger round trips per acted-on VM, wall <= 1.25 x the
bound, peak RSS <= 300 MB; and each VM to back up triggered exactly once. The last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient

from backupwarden.adapters.azure.clients import AzureClients, pooled_transport
from backupwarden.app import build_action_recorder, build_reconciler
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.reconcile import RUN_ACTION
from backupwarden.settings import Settings
from bench.outcomes import peak_rss_mb, reset_peak_rss
from bench.sweep import (
    ARM_READS,
    ARM_WRITES,
    BACKUP_ROUTE,
    CpuMeter,
    EmulatorProcess,
    emulator_process,
    generated_scenario,
)
from emulator.azurite import Azurite
from emulator.generator import subscription_id

VMS_PER_VAULT_MAX = 500  # half the service's 1,000 VMs per vault: room left to enrol
GRAPH_QUOTA = (15, 5.0)  # Resource Graph queries per window, window seconds (the emulator's default)
# Percent of each vault's VMs per state; the rest are protected and current.
UNPROTECTED_PERCENT = 2.0
PENDING_PERCENT = 2.0  # IRPending for 3 hours: past the 1-hour grace period
MIX = {"stale": 1.5, "failing_retryable": 1.0, "failing_escalate": 0.5, "stopped": 0.5, "orphaned": 0.5}
TARGET_ARM_PER_WRITTEN = 1.5
TARGET_LEDGER_PER_ACTED = 2.0
TARGET_BOUND_RATIO = 1.25
TARGET_PEAK_RSS_MB = 300.0
ACTED = frozenset({Result.TRIGGERED, Result.ESCALATED, Result.PROTECTED})
WRITTEN = frozenset({Result.TRIGGERED, Result.PROTECTED})  # acted on through an ARM write


@dataclass(frozen=True)
class Shape:
    vms: int
    subscriptions: int
    latency_ms: float

    @property
    def vaults_per_subscription(self) -> int:
        return max(1, math.ceil(self.vms / self.subscriptions / VMS_PER_VAULT_MAX))

    @property
    def vms_per_vault(self) -> int:
        return self.vms // self.subscriptions // self.vaults_per_subscription

    @property
    def vaults(self) -> int:
        return self.subscriptions * self.vaults_per_subscription

    def per_vault(self, percent: float) -> int:
        """The generator's share of a vault's VMs (rounded half up)."""
        return math.floor(self.vms_per_vault * percent / 100 + 0.5)

    @property
    def to_back_up(self) -> int:
        """VMs the run should trigger "Backup now" for: pending, stale, failing with a retryable error."""
        shares = (PENDING_PERCENT, MIX["stale"], MIX["failing_retryable"])
        return self.vaults * sum(self.per_vault(p) for p in shares)


def scenario(shape: Shape) -> dict[str, Any]:
    generate = {
        "subscriptions": shape.subscriptions,
        "vaults_per_subscription": shape.vaults_per_subscription,
        "vms_per_vault": shape.vms_per_vault,
        "unprotected_percent": UNPROTECTED_PERCENT,
        "stuck_percent": PENDING_PERCENT,
        "state_percents": MIX,
    }
    return generated_scenario("bench-reconcile", shape.latency_ms, generate)


def bench_env(emulator: EmulatorProcess, storage: str, shape: Shape, enroll_existing: str) -> dict[str, str]:
    return {
        "BACKUPWARDEN_ARM_ENDPOINT": emulator.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "bench",
        "BACKUPWARDEN_CA_BUNDLE": emulator.ca_bundle,
        "AzureWebJobsStorage": storage,
        "BACKUPWARDEN_SUBSCRIPTIONS": ",".join(subscription_id(s) for s in range(shape.subscriptions)),
        "BACKUPWARDEN_MAX_TRIGGERS_PER_RUN": "100000",  # above any estate here: the cap never binds
        "BACKUPWARDEN_ENROLL_EXISTING": enroll_existing,
        "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S": "1",
        "BACKUPWARDEN_ARM_READ_BUCKET": f"{ARM_READS[0]}/{ARM_READS[1]:g}",
        "BACKUPWARDEN_ARM_WRITE_BUCKET": f"{ARM_WRITES[0]}/{ARM_WRITES[1]:g}",
    }


class CountingClients(AzureClients):
    """The app's clients, with each Table Storage response counted by table (the SDK's response hook).
    Its table clients keep the SDK's default retries, not BACKUPWARDEN_HTTP_RETRY_TOTAL: Azurite on
    loopback does not fail, so no retry is counted."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.round_trips: Counter[str] = Counter()

    def _build_table(self, table_name: str) -> TableClient:
        if not self.settings.storage_connection_string:
            raise RuntimeError("the bench counts Azurite's round trips: it needs a connection string")
        return TableClient.from_connection_string(
            self.settings.storage_connection_string,
            table_name=table_name,
            transport=pooled_transport(self.settings.connection_verify),
            raw_response_hook=self._counter(table_name),
        )

    def _counter(self, table_name: str) -> Callable[[Any], None]:
        def count(_response: Any) -> None:
            self.round_trips[table_name] += 1

        return count


# --- figures ---------------------------------------------------------------------------------------
def request_kind(entry: dict[str, Any]) -> str:
    route, method = str(entry["route"]), str(entry["method"])
    if "Microsoft.ResourceGraph" in route:
        return "Resource Graph pages"
    if method == "GET" and (route.endswith("/backupPolicies") or route.endswith("/vaults")):
        return "per-vault/policy lists"
    if entry.get("kind") == "write" or method in ("PUT", "POST", "PATCH", "DELETE"):
        return "per-VM writes"
    if "/virtualMachines/" in route or "/backup" in route or "/protectionContainers/" in route:
        return "per-VM reads"
    return "other"


def graph_bound_s(queries: int) -> float:
    quota, window_s = GRAPH_QUOTA
    return max(0.0, (queries - quota) * window_s / quota)


def arm_bound_s(entries: list[dict[str, Any]]) -> float:
    """The busiest subscription's time in ARM's buckets: max over reads and writes of
    (requests - capacity) / refill (bench/sweep.py's bound, for the requests made)."""
    reads: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    for entry in entries:
        if not entry.get("subscription") or "Microsoft.ResourceGraph" in str(entry["route"]):
            continue
        (writes if entry["method"] != "GET" else reads)[str(entry["subscription"]).lower()] += 1
    read_s = max(((n - ARM_READS[0]) / ARM_READS[1] for n in reads.values()), default=0.0)
    write_s = max(((n - ARM_WRITES[0]) / ARM_WRITES[1] for n in writes.values()), default=0.0)
    return max(0.0, read_s, write_s)


@dataclass
class Run:
    wall_s: float
    read_s: float  # the bulk read and the classification, until the first decision
    outcomes: list[Outcome]
    entries: list[dict[str, Any]]
    round_trips: Counter[str]
    ledger_table: str
    outbox_table: str
    peak_rss_mb: float
    cpu_s: dict[str, float]
    classified: int


def run_reconciler(emulator: EmulatorProcess, env: dict[str, str]) -> Run:
    settings = Settings.from_env(env)
    clients = CountingClients(settings)
    with clients:
        reconciler = build_reconciler(
            settings, clients, progress=lambda m: print(f"coverage: {m}", file=sys.stderr)
        )
        recorder = build_action_recorder(settings, clients)

        first_decision: list[float] = []  # when the read was done and the first decision made

        def record(outcomes: list[Outcome]) -> None:
            if not first_decision:
                first_decision.append(time.perf_counter())
            recorder.record(outcomes, source="Cli", dry_run=settings.dry_run)

        emulator.admin("DELETE", "requests")
        clients.round_trips.clear()  # the tables' creation is the deployment's, not the run's
        reset = reset_peak_rss()
        cpu = CpuMeter(emulator.pid)
        started = time.perf_counter()
        result = reconciler.run(record)
        finished = time.perf_counter()
        spent = cpu.elapsed()
        peak = peak_rss_mb() if reset else float("nan")
        round_trips = Counter(clients.round_trips)
    if result.scan is None:
        raise RuntimeError(f"the run read nothing: {result.report.failure}")
    entries = [e for e in emulator.requests() if not str(e["route"]).startswith("/_emulator")]
    return Run(
        finished - started,
        (first_decision or [finished])[0] - started,
        result.report.outcomes,
        entries,
        round_trips,
        settings.ledger_table,
        settings.outbox_table,
        peak,
        spent,
        len(result.scan.classifications),
    )


def figures(shape: Shape, run: Run) -> dict[str, Any]:
    decisions = [o for o in run.outcomes if o.action != RUN_ACTION]
    acted = [o for o in decisions if o.result in ACTED]
    by_action = Counter(f"{o.action} {o.result.value}" for o in decisions)
    kinds = Counter(request_kind(e) for e in run.entries)
    throttled = sum(1 for e in run.entries if e["status"] == 429)
    posts = Counter(
        str(e["path"]).lower()
        for e in run.entries
        if e["method"] == "POST" and str(e["route"]).endswith(BACKUP_ROUTE)
    )
    graph_s = graph_bound_s(kinds["Resource Graph pages"])
    arm_s = arm_bound_s(run.entries)
    bound = graph_s + arm_s
    ledger = run.round_trips[run.ledger_table]
    outbox = run.round_trips[run.outbox_table]
    n = len(acted) or 1
    written = sum(1 for o in acted if o.result in WRITTEN) or 1
    return {
        "vms": run.classified,
        "acted_on": len(acted),
        "decisions": dict(sorted(by_action.items())),
        "arm_requests": len(run.entries),
        "arm_requests_by_kind": dict(sorted(kinds.items())),
        "throttled_429": throttled,
        "arm_per_acted_vm": round(len(run.entries) / n, 3),
        "arm_per_written_vm": round(len(run.entries) / written, 3),
        "ledger_round_trips": ledger,
        "ledger_per_acted_vm": round(ledger / n, 3),
        "outbox_round_trips": outbox,
        "outbox_per_acted_vm": round(outbox / n, 3),
        "wall_s": round(run.wall_s, 2),
        "read_s": round(run.read_s, 2),
        "bound_s": round(bound, 2),
        "bound_graph_quota_s": round(graph_s, 2),
        "bound_arm_buckets_s": round(arm_s, 2),
        "ratio_to_bound": round(run.wall_s / bound, 2) if bound else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "cpu_s": run.cpu_s,
        "app_cpu_ms_per_acted_vm": round(run.cpu_s["this process"] * 1000 / n, 1),
        "expected_triggers": shape.to_back_up,
        "triggered_vms": len(posts),
        "duplicate_triggers": sum(1 for k in posts.values() if k > 1),
        "failed": sum(1 for o in decisions if o.result is Result.FAILED),
    }


def checks_for(found: dict[str, Any]) -> dict[str, bool]:
    ratio = found["ratio_to_bound"]
    return {
        "each VM to back up triggered once": (
            found["triggered_vms"] == found["expected_triggers"]
            and found["duplicate_triggers"] == 0
            and found["failed"] == 0
        ),
        f"ARM requests per VM written to <= {TARGET_ARM_PER_WRITTEN:g}": found["arm_per_written_vm"]
        <= TARGET_ARM_PER_WRITTEN,
        f"ledger round trips per acted-on VM <= {TARGET_LEDGER_PER_ACTED:g}": found["ledger_per_acted_vm"]
        <= TARGET_LEDGER_PER_ACTED,
        f"wall <= {TARGET_BOUND_RATIO:g} x bound": ratio is not None and ratio <= TARGET_BOUND_RATIO,
        f"peak RSS <= {TARGET_PEAK_RSS_MB:g} MB": found["peak_rss_mb"] <= TARGET_PEAK_RSS_MB,
    }


def render(shape: Shape, found: dict[str, Any], checks: dict[str, bool]) -> str:
    head = (
        f"reconcile: {shape.subscriptions} subscriptions, {shape.vaults} vaults, {found['vms']:,} VMs "
        f"classified; latency {shape.latency_ms:g} ms"
    )
    rows = [("figure", "value")]
    rows += [(f"acted on: {k}", str(v)) for k, v in found["decisions"].items()]
    rows += [("acted-on VMs", str(found["acted_on"])), ("ARM requests", str(found["arm_requests"]))]
    rows += [(f"  {k}", str(v)) for k, v in found["arm_requests_by_kind"].items()]
    for key in (
        "throttled_429",
        "arm_per_acted_vm",
        "arm_per_written_vm",
        "ledger_round_trips",
        "ledger_per_acted_vm",
        "outbox_round_trips",
        "outbox_per_acted_vm",
        "wall_s",
        "read_s",
        "bound_graph_quota_s",
        "bound_arm_buckets_s",
        "bound_s",
        "ratio_to_bound",
        "peak_rss_mb",
        "app_cpu_ms_per_acted_vm",
        "expected_triggers",
        "triggered_vms",
        "duplicate_triggers",
    ):
        rows.append((key, str(found[key])))
    spent = ", ".join(f"{name} {seconds:.1f}" for name, seconds in found["cpu_s"].items() if seconds)
    rows.append(("CPU s", spent))
    rows += [(f"check {name}", "ok" if passed else "MISSED") for name, passed in checks.items()]
    width = max(len(row[0]) for row in rows)
    return "\n".join([head, "", *(f"{name:<{width}}  {value}" for name, value in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the emulator's latency per request")
    parser.add_argument("--enroll-existing", choices=("off", "tagged", "all"), default="off")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    shape = Shape(args.vms, args.subscriptions, args.latency_ms)
    if shape.vms_per_vault < 1:
        parser.error("--vms must be at least --subscriptions")
    with (
        tempfile.TemporaryDirectory(prefix="bench-reconcile-") as workdir,
        Azurite() as azurite,
        emulator_process(Path(workdir), scenario(shape), 1.0) as emulator,
    ):
        env = bench_env(emulator, azurite.connection_string, shape, args.enroll_existing)
        run = run_reconciler(emulator, env)
    found = figures(shape, run)
    checks = checks_for(found)
    print(render(shape, found, checks))
    print(json.dumps({**found, "checks": checks}))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
