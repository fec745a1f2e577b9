"""The "automation silent" rule (a dead man's switch on the sweep's `sweep_run` records) under the lag
Azure has, measured on the emulator: how late a run's record may become queryable before the rule
fires falsely, and how soon it fires when the sweep really stops.

The sweep runs as its timer does, every 30 minutes; its records go out with the next outcomes run,
5 minutes later; Logs Ingestion makes them queryable `monitor.ingestion_delay_s` after the upload. A
record's lag (`ingestion_time() - TimeGenerated`) is those 5 minutes plus the ingestion delay. The rule
is deployed as alerts.bicep deploys it (its KQL, window and frequency from alert_rules.py) once per
phase: the copy of phase d evaluates d, d + 15, ... minutes after each run, as Azure's evaluations may
fall anywhere between the runs. The clock stands still between steps; the figures are quoted in
docs/alerts.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from backupwarden.domain.alert_rules import AUTOMATION_SILENT, AlertRuleDefinition
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.flows.sweep.candidates import SWEEP_RUN_ACTION
from devtools.demo import DEMO_WORKSPACE_ID
from tests.remediation_fixtures import RemediationBench

MINUTE = timedelta(minutes=1)
SCHEDULE = timedelta(minutes=30)  # SWEEP_SCHEDULE's default
SHIPPED_AFTER = timedelta(minutes=5)  # the outcomes timer's schedule: the records wait for its next run
# Minutes from a run to the evaluations after it (mod the 15-minute frequency): a run's own minute, the
# next, the middle, the period's last, and both sides of the 40-minute case's edge.
PHASES = (0, 1, 5, 9, 10, 14)


@dataclass
class SweepTimeline:
    """The sweep and outcomes timers on the emulated clock, moved a minute at a time, and the rule
    deployed once per phase."""

    bench: RemediationBench
    runs: list[datetime] = field(default_factory=list)
    rules: dict[int, AlertRuleDefinition] = field(default_factory=dict)
    sweeping: bool = True

    def go_on_for(self, duration: timedelta) -> None:
        for _ in range(int(duration / MINUTE)):
            now = self.bench.emulator.now()
            if self.sweeping and (not self.runs or now - self.runs[-1] >= SCHEDULE):
                self.bench.sweep_and_record()
                self.runs.append(now)
            if self.runs and now - self.runs[-1] == SHIPPED_AFTER:
                self.bench.ship()
            self.bench.emulator.advance(MINUTE.total_seconds())

    def deploy_at_every_phase(self) -> None:
        """The rule as deployed, copy d added d minutes after a run (same KQL, window and frequency)."""
        assert self.runs and self.bench.emulator.now() - self.runs[-1] == SCHEDULE
        for minute in range(max(PHASES) + 1):
            if minute in PHASES:
                self.rules[minute] = replace(AUTOMATION_SILENT, name=f"{AUTOMATION_SILENT.name}-{minute:02d}")
                self.bench.add_rules(None, self.rules[minute])
            self.go_on_for(MINUTE)

    def stop_and_resume(self, ingestion_delay: timedelta) -> tuple[datetime, datetime, timedelta]:
        """An hour on schedule, 4 runs missed, 90 minutes on schedule again; (last run, first run back,
        the records' lag)."""
        self.bench.monitor.settings.ingestion_delay_s = ingestion_delay.total_seconds()
        self.go_on_for(timedelta(hours=1))
        last_run = self.runs[-1]
        self.sweeping = False
        self.go_on_for(SCHEDULE * 5 - (self.bench.emulator.now() - last_run))
        self.sweeping = True
        self.go_on_for(timedelta(minutes=90))
        return last_run, self.runs[self.runs.index(last_run) + 1], SHIPPED_AFTER + ingestion_delay

    def notified(self, condition: str = "Fired") -> dict[int, list[datetime]]:
        """Per phase, the times of its notifications of that condition (Fired or Resolved)."""
        assert self.bench.monitor.wait_for_deliveries(timeout_s=30)
        key = "firedDateTime" if condition == "Fired" else "resolvedDateTime"
        return {
            phase: [
                _time(payload["data"]["essentials"][key])
                for payload in self.bench.notifications(rule.name, condition)
            ]
            for phase, rule in self.rules.items()
        }

    def evaluated_without_error(self) -> bool:
        deployed = [self.bench.monitor.alerts.rules[rule.name] for rule in self.rules.values()]
        return all(rule.last_error is None and rule.last_evaluated_at for rule in deployed)

    def record_lags(self) -> set[timedelta]:
        """`ingestion_time() - TimeGenerated` of the sweep_run records queryable now."""
        result = self.bench.monitor.query(
            DEMO_WORKSPACE_ID,
            f'{AUTOMATION_ACTIONS.table} | where Action == "{SWEEP_RUN_ACTION}"'
            " | project TimeGenerated, Ingested = ingestion_time()",
        )
        return {_time(ingested) - _time(generated) for generated, ingested in result.rows}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def on_schedule(bench: RemediationBench, ingestion_delay: timedelta) -> SweepTimeline:
    """The sweep on its schedule for an hour (two runs), then the rule deployed at every phase."""
    bench.monitor.settings.ingestion_delay_s = ingestion_delay.total_seconds()
    timeline = SweepTimeline(bench)
    timeline.go_on_for(SCHEDULE * 2)
    timeline.deploy_at_every_phase()
    return timeline


def test_the_sweep_on_schedule_with_its_records_up_to_30_minutes_late_is_never_silent(
    remediation_bench: RemediationBench,
) -> None:
    """Ingestion delays of 3, 15 and 25 minutes, 90 minutes each (lags grow: no record comes earlier)."""
    delays = [timedelta(minutes=3), timedelta(minutes=15), timedelta(minutes=25)]
    timeline = on_schedule(remediation_bench, delays[0])
    for delay in delays:
        remediation_bench.monitor.settings.ingestion_delay_s = delay.total_seconds()
        timeline.go_on_for(timedelta(minutes=90))

    assert timeline.record_lags() == {SHIPPED_AFTER + delay for delay in delays}  # 8, 20 and 30 minutes
    assert timeline.evaluated_without_error()
    assert timeline.notified() == {phase: [] for phase in PHASES}, "no evaluation at any phase fired"


def test_records_40_minutes_late_make_it_fire_at_every_run_when_evaluations_come_1_to_9_minutes_after(
    remediation_bench: RemediationBench,
) -> None:
    """35 minutes of ingestion: the window's queryable part, its oldest 20 minutes, holds no run when
    the evaluation comes 1 to 9 minutes after one (a run's own minute and the 10th see one at the edge)."""
    ingestion_delay = timedelta(minutes=35)
    timeline = on_schedule(remediation_bench, ingestion_delay)
    deployed = remediation_bench.emulator.now()
    timeline.go_on_for(timedelta(hours=3))

    assert timeline.record_lags() == {SHIPPED_AFTER + ingestion_delay}
    assert timeline.evaluated_without_error()
    fired, resolved = timeline.notified(), timeline.notified("Resolved")
    assert {phase for phase, times in fired.items() if times} == {1, 5, 9}
    runs = [run for run in timeline.runs if run > deployed]
    for phase in (1, 5, 9):
        assert fired[phase] == [run + phase * MINUTE for run in runs], "a false alarm at every run"
        next_evaluations = [at + AUTOMATION_SILENT.frequency for at in fired[phase]]
        assert resolved[phase] == [at for at in next_evaluations if at <= remediation_bench.emulator.now()]


def test_a_stopped_sweep_alerts_within_window_and_frequency_of_its_last_run_and_resolves_when_it_runs(
    remediation_bench: RemediationBench,
) -> None:
    """The sweep misses 4 runs and comes back, twice: with records 8, then 30 minutes late."""
    timeline = on_schedule(remediation_bench, timedelta(minutes=3))
    stops = [timeline.stop_and_resume(timedelta(minutes=3)), timeline.stop_and_resume(timedelta(minutes=25))]

    assert timeline.evaluated_without_error()
    fired, resolved = timeline.notified(), timeline.notified("Resolved")
    window, frequency = AUTOMATION_SILENT.window, AUTOMATION_SILENT.frequency
    for n, (last_run, resumed, lag) in enumerate(stops):
        assert resumed - last_run == SCHEDULE * 5
        for phase in PHASES:
            assert len(fired[phase]) == len(resolved[phase]) == 2, phase
            assert window < fired[phase][n] - last_run <= window + frequency, phase
            assert lag <= resolved[phase][n] - resumed < lag + frequency, phase
        fired_after = {fired[phase][n] - last_run for phase in PHASES}
        assert min(fired_after) == window + MINUTE and max(fired_after) == window + frequency
