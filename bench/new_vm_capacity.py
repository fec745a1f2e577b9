"""The new-VM benchmark's capacity ramp: steps of VMs at rising arrival rates until the workers saturate.

A fixed arrival rate measures the machine: a rate that leaves the workers half idle on one machine backs
the queue up on one half as fast, and the per-VM overhead becomes queue wait. So the benchmark first finds
the rate at which this machine's workers saturate, then measures the per-VM path at half of it.

Each step creates VMs evenly at its rate for `step_s` real seconds, then lets the queue drain. A step
saturated the workers when they fell behind the arrivals (the step's VMs got their backup jobs at under
`keep_up` of the rate they were created at) or messages waited for a free worker (the step's deliveries,
duplicates and requeues included, waited `saturation_wait_s` or more at p90). The capacity is the rate the
workers served during the first saturated step, and not below the last rate they kept up with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.new_vm_harness import Handled


@dataclass(frozen=True)
class RampConfig:
    first_rate: float = 1.0  # VMs/s
    factor: float = 1.5  # each step's rate over the previous one's
    max_rate: float = 30.0
    step_s: float = 8.0  # real seconds of arrivals per step
    min_vms: int = 6  # per step, so that a slow step still shows a rate
    keep_up: float = 0.9
    saturation_wait_s: float = 0.5

    def rates(self) -> list[float]:
        steps = int(math.log(self.max_rate / self.first_rate, self.factor) + 1e-9) + 1
        return [self.first_rate * self.factor**k for k in range(steps)]

    def vms_at(self, rate: float) -> int:
        return max(self.min_vms, round(rate * self.step_s))


@dataclass(frozen=True)
class Load:
    """What one batch of VMs, created at one rate, did to the queue and its workers."""

    asked_rate: float
    vms: int
    with_job: int  # VMs that got their initial backup job
    arrival_rate: float  # VMs created per second, first create to last
    served_rate: float  # VMs that got their backup job per second, first job to last
    wait_p90_s: float  # queue wait of the batch's deliveries (visible -> a worker starting it)
    busy: float  # share of the workers' time in the batch's handle calls, its first start to last finish

    def saturated(self, config: RampConfig) -> bool:
        fell_behind = self.served_rate < config.keep_up * self.arrival_rate
        return fell_behind or self.wait_p90_s >= config.saturation_wait_s


def load_of(asked_rate: float, created: Sequence[float], calls: Sequence[Handled], workers: int) -> Load:
    """`created`: the moments (time.monotonic()) the batch's VMs were created; `calls`: its handle calls."""
    jobs: dict[str, float] = {}
    for call in calls:
        if call.outcome.job_id:
            jobs[call.item.vm_id] = min(jobs.get(call.item.vm_id, call.finished), call.finished)
    span = max((c.finished for c in calls), default=0.0) - min((c.started for c in calls), default=0.0)
    return Load(
        asked_rate=asked_rate,
        vms=len(created),
        with_job=len(jobs),
        arrival_rate=rate_of(created),
        served_rate=rate_of(list(jobs.values())),
        wait_p90_s=percentile([call.waited_s for call in calls], 90),
        busy=sum(c.finished - c.started for c in calls) / (workers * span) if span > 0 else math.nan,
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def rate_of(moments: Sequence[float]) -> float:
    """Events per second over their span: n - 1 intervals between the first and the last."""
    if len(moments) < 2:
        return math.nan
    span = max(moments) - min(moments)
    return (len(moments) - 1) / span if span > 0 else math.inf


@dataclass(frozen=True)
class Ramp:
    config: RampConfig
    steps: list[Load]

    @property
    def saturated_at(self) -> Load | None:
        return next((step for step in self.steps if step.saturated(self.config)), None)

    @property
    def capacity(self) -> float:
        """VMs/s: served during the first saturated step, not below the last rate kept up with; without
        a saturated step, the highest rate tried (a lower bound)."""
        kept_up = [s.arrival_rate for s in self.steps if not s.saturated(self.config)]
        saturated = self.saturated_at
        if saturated is None:
            return max(kept_up, default=math.nan)
        served = min(saturated.served_rate, saturated.arrival_rate)
        return max([served, *kept_up]) if not math.isnan(served) else max(kept_up, default=math.nan)


# run_batch(tag, vms, rate): create `vms` VMs named with `tag` at `rate` VMs/s, wait for the queue to
# drain, return their Load.
RunBatch = Callable[[str, int, float], Load]


def find_capacity(config: RampConfig, run_batch: RunBatch) -> Ramp:
    """Steps at rising rates, up to and including the first that saturates the workers."""
    steps: list[Load] = []
    for index, rate in enumerate(config.rates(), start=1):
        step = run_batch(f"r{index}", config.vms_at(rate), rate)
        steps.append(step)
        if step.saturated(config):
            break
    return Ramp(config, steps)


def render_ramp(ramp: Ramp) -> list[str]:
    config = ramp.config
    lines = [
        f"Capacity ramp: steps of {config.step_s:g} s of arrivals from {config.first_rate:g} VMs/s, "
        f"x{config.factor:g} per step; saturated when VMs get their backup jobs at under "
        f"{config.keep_up:.0%} of the arrival rate or queue wait p90 >= {config.saturation_wait_s:g} s",
        "",
        f"{'step':<6}{'VMs':>5}{'arrivals/s':>12}{'served/s':>10}{'served/arr':>12}{'wait p90 s':>12}"
        f"{'busy':>7}  saturated",
    ]
    for index, step in enumerate(ramp.steps, start=1):
        ratio = step.served_rate / step.arrival_rate if step.arrival_rate else math.nan
        lines.append(
            f"{index:<6}{step.vms:>5}{step.arrival_rate:>12.2f}{step.served_rate:>10.2f}{ratio:>12.0%}"
            f"{step.wait_p90_s:>12.3f}{step.busy:>7.0%}  {'yes' if step.saturated(config) else 'no'}"
        )
    bound = "" if ramp.saturated_at else f" (a lower bound: no step to {config.max_rate:g} VMs/s saturated)"
    lines.append(f"capacity: {ramp.capacity:.2f} VMs/s{bound}")
    return lines
