"""The machine's speed, measured beside a benchmark's figures: a fixed pure-Python workload, timed.

A benchmark whose figures depend on the CPU quotes this beside them, so that a figure from a slower or a
busier machine can be told from a change in the code. The workload is the kind of work the automation's
own Python does (formatting resource ids, splitting them, dict look-ups); it runs in the benchmark's
process, on one core, a few times: the median is the speed the benchmark had, the spread shows how much
other work shared the machine.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

OPS_PER_REPETITION = 200_000
# The median of this workload on the 2-vCPU machine docs/benchmarks.md's new-VM figures were measured
# on, at rest (load average 0.5): a ratio of 0.5 means a machine half as fast per core, or one that busy.
REFERENCE_OPS_PER_S = 800_000.0


def workload(ops: int) -> int:
    """`ops` times: format a resource id, split it, count its parts in a dict; returns a checksum."""
    parts: dict[str, int] = {}
    checksum = 0
    for i in range(ops):
        resource_id = f"/subscriptions/{i % 97:08d}/resourceGroups/rg-{i % 13}/providers/vm-{i % 1009}"
        name = resource_id.rsplit("/", 1)[-1]
        parts[name] = parts.get(name, 0) + len(resource_id.split("/"))
        checksum = (checksum + parts[name] * (i & 7)) % 1_000_003
    return checksum


@dataclass(frozen=True)
class Calibration:
    ops_per_s: tuple[float, ...]  # one per repetition
    load_average: float  # the 1-minute load average when it ran

    @property
    def median(self) -> float:
        return statistics.median(self.ops_per_s)

    @property
    def ratio(self) -> float:
        """The median against the reference machine's (1.0: as fast as that machine at rest)."""
        return self.median / REFERENCE_OPS_PER_S

    def __add__(self, other: Calibration) -> Calibration:
        """Both runs' repetitions; the higher load average."""
        return Calibration(self.ops_per_s + other.ops_per_s, max(self.load_average, other.load_average))

    def describe(self) -> str:
        low, high = min(self.ops_per_s), max(self.ops_per_s)
        return (
            f"{self.median / 1e6:.2f} M ops/s ({self.ratio:.2f}x the reference machine; "
            f"{low / 1e6:.2f}-{high / 1e6:.2f} over {len(self.ops_per_s)} repetitions), "
            f"load average {self.load_average:.1f}"
        )


def calibrate(repetitions: int = 5, ops: int = OPS_PER_REPETITION) -> Calibration:
    """Time the workload `repetitions` times (0.25 s each on the reference machine)."""
    rates = []
    for _ in range(repetitions):
        began = time.perf_counter()
        workload(ops)
        rates.append(ops / (time.perf_counter() - began))
    return Calibration(tuple(rates), os.getloadavg()[0])
