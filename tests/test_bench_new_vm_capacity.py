"""The new-VM benchmark's capacity ramp and its CPU calibration: saturation, capacity, the machine's speed."""

from __future__ import annotations

import math

import pytest

from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from bench.calibration import REFERENCE_OPS_PER_S, Calibration, calibrate, workload
from bench.new_vm_capacity import Load, RampConfig, find_capacity, load_of, rate_of
from bench.new_vm_harness import Handled

VM = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-{}"


def call(vm: int, *, visible: float, started: float, finished: float, job: bool) -> Handled:
    vm_id = VM.format(vm)
    item = NewVmWorkItem(vm_id, "s", "rg", f"vm-{vm}", f"event-{vm}")
    result = Result.PROTECTED if job else Result.REQUEUED
    outcome = Outcome("run", vm_id, "vault", "protect", result, "", job_id="job" if job else None)
    return Handled(item, outcome, False, started, finished, (), visible)


def load(rate: float, served: float, wait_p90_s: float = 0.0) -> Load:
    return Load(rate, 10, 10, rate, served, wait_p90_s, 0.5)


def test_the_ramp_rises_by_its_factor_up_to_the_highest_rate() -> None:
    rates = RampConfig(first_rate=1.0, factor=1.5, max_rate=5.0).rates()

    assert rates == pytest.approx([1.0, 1.5, 2.25, 3.375])
    assert RampConfig(first_rate=2.0, step_s=4.0, min_vms=6).vms_at(1.0) == 6
    assert RampConfig(step_s=4.0).vms_at(10.0) == 40


def test_a_batch_load_counts_arrivals_backup_jobs_and_every_delivery_s_wait() -> None:
    created = [0.0, 1.0, 2.0]
    calls = [
        call(0, visible=0.1, started=0.1, finished=1.5, job=True),
        call(0, visible=0.1, started=0.2, finished=0.3, job=False),  # the duplicate, requeued
        call(1, visible=1.1, started=1.1, finished=3.5, job=True),
        call(2, visible=2.1, started=4.1, finished=5.5, job=True),  # waited 2 s for a worker
    ]

    found = load_of(1.0, created, calls, workers=2)

    assert (found.vms, found.with_job) == (3, 3)
    assert found.arrival_rate == pytest.approx(1.0)
    assert found.served_rate == pytest.approx(0.5)  # jobs at 1.5, 3.5, 5.5
    assert found.wait_p90_s == pytest.approx(2.0)
    assert found.busy == pytest.approx((1.4 + 0.1 + 2.4 + 1.4) / (2 * 5.4))
    assert math.isnan(rate_of([1.0]))


def test_workers_saturate_when_they_fall_behind_or_messages_wait() -> None:
    config = RampConfig(keep_up=0.9, saturation_wait_s=0.5)

    assert not load(4.0, served=3.7).saturated(config)
    assert load(4.0, served=3.5).saturated(config)
    assert load(4.0, served=4.0, wait_p90_s=0.5).saturated(config)


def test_the_ramp_stops_at_the_first_saturated_step_and_quotes_what_the_workers_served() -> None:
    asked: list[tuple[str, int, float]] = []

    def workers_serving_at_most_3(tag: str, vms: int, rate: float) -> Load:
        asked.append((tag, vms, rate))
        return load(rate, served=min(rate, 3.0), wait_p90_s=0.0 if rate <= 3.0 else 4.0)

    ramp = find_capacity(
        RampConfig(first_rate=1.0, factor=2.0, step_s=5.0, max_rate=30.0), workers_serving_at_most_3
    )

    assert asked == [("r1", 6, 1.0), ("r2", 10, 2.0), ("r3", 20, 4.0)]
    assert ramp.saturated_at is ramp.steps[-1]
    assert ramp.capacity == pytest.approx(3.0)


def test_capacity_is_not_below_the_last_rate_kept_up_with_and_a_lower_bound_without_saturation() -> None:
    config = RampConfig(first_rate=1.0, factor=2.0, max_rate=4.0)

    noisy = find_capacity(config, lambda tag, vms, rate: load(rate, served=1.5 if rate > 2 else rate))
    never = find_capacity(config, lambda tag, vms, rate: load(rate, served=rate))

    assert noisy.capacity == pytest.approx(2.0)  # served 1.5 at 4/s, but kept up with 2/s
    assert never.saturated_at is None
    assert never.capacity == pytest.approx(4.0)


def test_calibration_times_a_fixed_workload_and_quotes_it_against_the_reference() -> None:
    assert workload(1000) == workload(1000)

    found = calibrate(repetitions=3, ops=2000)
    busier = found.load_average + 1.0  # whatever the machine's own load is now
    both = found + Calibration((REFERENCE_OPS_PER_S,), busier)

    assert len(found.ops_per_s) == 3
    assert all(rate > 0 for rate in found.ops_per_s)
    assert both.load_average == busier
    assert len(both.ops_per_s) == 4
    assert Calibration((REFERENCE_OPS_PER_S / 2,), 0.0).ratio == pytest.approx(0.5)
