"""The demo's fifth phase: every protection state once (emulator/scenarios/coverage.yaml), the coverage
before, the reconciler's actions, and the coverage after the backups it started have run.

The phase loads its own estate, so it comes last: the estate of phases 1-4 is gone after it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.app import build_action_recorder, build_coverage, build_reconciler
from backupwarden.domain.coverage import CoverageFigure
from backupwarden.domain.protection_states import EnrollExisting
from backupwarden.domain.records import Outcome
from backupwarden.domain.text_table import text_table
from backupwarden.flows.coverage import CoverageScan
from backupwarden.settings import Settings
from emulator import Emulator
from emulator.scenario import load_scenario_file


def coverage_phase(
    emulator: Emulator, settings: Settings, clients: AzureClients, scenario: dict[str, Any] | None = None
) -> str:
    """`scenario`: the coverage estate (emulator/scenarios/coverage.yaml when None)."""
    scenario = scenario or load_scenario_file("coverage")
    emulator.load_scenario(scenario)
    settings = replace(
        settings,
        subscriptions=tuple(sub["id"] for sub in scenario["subscriptions"]),
        enroll_existing=EnrollExisting.ALL,
    )
    recorder = build_action_recorder(settings, clients, now=emulator.now)

    def record(outcomes: list[Outcome]) -> None:
        recorder.record(outcomes, source="Timer", dry_run=settings.dry_run)

    acted = build_reconciler(settings, clients, now=emulator.now).run(record)
    before = acted.scan  # what the reconciler read and acted on
    if before is None:
        raise RuntimeError(f"the coverage read failed: {acted.report.failure}")
    emulator.advance(emulator.estate.timings.backup_job_s + 60)  # the backups it started have run
    after = build_coverage(settings, clients, now=emulator.now).run()
    return render_coverage_phase(before, acted.report.outcomes, after, settings.enroll_existing)


def render_coverage_phase(
    before: CoverageScan, outcomes: list[Outcome], after: CoverageScan, enroll: EnrollExisting
) -> str:
    done = {o.vm_id.lower(): o for o in outcomes if o.vm_id}
    states_after = {c.vm.id.lower(): c.state.value for c in after.classifications}
    rows = [("VM", "STATE BEFORE", "ACTION", "RESULT", "WHY", "STATE AFTER")]
    for c in before.classifications:
        key = c.vm.id.lower()
        outcome = done.get(key)
        why = outcome.reason if outcome else c.reason
        if outcome and outcome.error_code:
            why = f"{why}: {outcome.error_code}"
        rows.append(
            (
                c.vm.name,
                c.state.value,
                c.action.value,
                outcome.result.value if outcome else "-",
                why,
                states_after.get(key, "?"),
            )
        )
    figures = [("COVERAGE", "BEFORE", "AFTER")]
    pairs = zip(
        (before.report.total, *before.report.by_subscription),
        (after.report.total, *after.report.by_subscription),
        strict=True,
    )
    for was, now in pairs:
        figures.append((was.scope, _figure(was), _figure(now)))
    return "\n".join(
        [
            "== 5. coverage: every VM in one protection state; the reconciler acts (coverage --act) ==",
            f"estate: emulator/scenarios/coverage.yaml; BACKUPWARDEN_ENROLL_EXISTING={enroll}",
            text_table(rows),
            "",
            text_table(figures),
            "covered = a recovery point within the policy's RPO (docs/coverage.md); after = once the"
            " backups it started have run",
        ]
    )


def _figure(figure: CoverageFigure) -> str:
    percent = figure.percent
    share = "-" if percent is None else f"{percent:.0f}%"
    return f"{figure.covered} of {figure.in_scope} ({share})"
