"""The command line: the same code paths as the Functions triggers."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.storage.alert_dedup import DedupUnavailable
from backupwarden.adapters.storage.ledger import LedgerUnavailable
from backupwarden.adapters.storage.outbox import OutboxUnavailable
from backupwarden.adapters.storage.queues import QueueError
from backupwarden.app import (
    build_action_recorder,
    build_clients,
    build_coverage,
    build_coverage_recorder,
    build_outcome_shipping,
    build_protect_vm,
    build_reconciler,
    build_remediation,
    build_sweep_fanout,
    build_sweep_worker,
    report_query,
)
from backupwarden.cli.coverage_html import render_coverage_html, scan_point
from backupwarden.cli.drain import DrainConfig, sweep_and_drain
from backupwarden.domain.alerts import InvalidAlert
from backupwarden.domain.coverage import CoveragePoint
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.text_table import text_table
from backupwarden.domain.vm_events import InvalidEvent
from backupwarden.flows.coverage import CoverageScan
from backupwarden.flows.coverage_shipping import coverage_trend
from backupwarden.flows.new_vm.event_batch import handle_events, read_events
from backupwarden.flows.outcomes.report import build_outcome_report, render_report_table
from backupwarden.flows.remediation.worker import read_alerts, remediate_alerts
from backupwarden.flows.run_report import RunReport
from backupwarden.settings import Settings, SettingsError, parse_duration

DEFAULT_SWEEP_WORKERS = 8
COVERAGE_HISTORY = timedelta(days=30)  # the html page's chart: a month of runs
STORAGE_FAILURES = (LedgerUnavailable, OutboxUnavailable, DedupUnavailable, QueueError)
MAX_REPORT_WINDOW = timedelta(
    days=730
)  # Log Analytics keeps data queryable (interactive) for 2 years at most


def main(argv: Sequence[str] | None = None, prog: str = "backupwarden") -> int:
    """The `backupwarden` console script; `python -m backupwarden` passes its own `prog`."""
    parser = argparse.ArgumentParser(prog=prog, description="Make sure every Azure VM is backed up.")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="trigger the initial backup of VMs stuck in IRPending")
    sweep.add_argument("--dry-run", action="store_true", help="decide and report, but trigger nothing")
    sweep.add_argument("--output", choices=("table", "json"), default="table")
    sweep.add_argument(
        "--workers",
        type=_positive_int,
        default=DEFAULT_SWEEP_WORKERS,
        help="VMs handled at a time; a plan larger than BACKUPWARDEN_SWEEP_INLINE_MAX goes through the sweep "
        f"queue, drained here by this many threads (default {DEFAULT_SWEEP_WORKERS})",
    )
    remediate = commands.add_parser("remediate", help="remediate what alert payloads (file or -) report")
    remediate.add_argument("source", help="a common-alert-schema JSON file (one payload or an array), or -")
    remediate.add_argument("--dry-run", action="store_true", help="decide and report, but trigger nothing")
    remediate.add_argument("--output", choices=("table", "json"), default="table")
    handle = commands.add_parser("handle-event", help="protect the VMs of resource write events (file or -)")
    handle.add_argument("source", help="a JSON file holding one event or an array, or - for standard input")
    handle.add_argument("--dry-run", action="store_true", help="decide and report, but change nothing")
    handle.add_argument("--output", choices=("table", "json"), default="table")
    commands.add_parser("ship-outcomes", help="send finished jobs and decisions to Log Analytics")
    outcomes = commands.add_parser(
        "report", help="what Log Analytics shows: jobs by status, failures, VMs without a recovery point"
    )
    outcomes.add_argument("--since", type=_window, default="24h", help="window: 24h, 90m, 7d (default 24h)")
    outcomes.add_argument("--output", choices=("table", "json"), default="table")
    covered = commands.add_parser(
        "coverage", help="every VM in scope with its protection state and proposed action, and the coverage"
    )
    covered.add_argument("--output", choices=("table", "json", "html"), default="table")
    covered.add_argument(
        "--act",
        action="store_true",
        help="take each proposed action through the ledger (Backup now, escalate) and record it",
    )
    covered.add_argument(
        "--dry-run",
        action="store_true",
        help="with --act: decide and record what would be done, claim and send nothing",
    )
    commands.add_parser("demo", help="run the main jobs against the embedded emulator and Azurite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "demo":
        return _demo()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except STORAGE_FAILURES as exc:
        # one line, no traceback: the SDK's error under the adapter's is named by its class
        failed = exc.step if isinstance(exc, QueueError) else str(exc)  # a step names no host
        print(f"error: storage is unavailable ({_root_cause(exc)}: {failed})", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "coverage":
        if args.act:
            return _reconcile(settings, args.output, dry_run=args.dry_run or settings.dry_run)
        return _coverage(settings, args.output)  # read-only: proposes, with or without --dry-run
    if args.command == "report":
        return _report(settings, args.since, args.output)
    if args.command == "ship-outcomes":
        with build_clients(settings) as clients:
            try:
                shipped = build_outcome_shipping(settings, clients).run()
            except SettingsError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        print(json.dumps(shipped.to_json()))
        return 0 if all(result.complete for result in shipped.results) else 1
    dry_run = True if args.dry_run else None
    complete = True
    if args.command == "remediate":
        try:
            alerts = read_alerts(_read_source(args.source))
        except (OSError, UnicodeDecodeError, InvalidAlert) as exc:
            print(f"error: {args.source}: {exc}", file=sys.stderr)
            return 2
        with build_clients(settings) as clients:
            try:
                remediation = build_remediation(settings, clients, dry_run=dry_run)
            except SettingsError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            report = remediate_alerts(alerts, remediation, dry_run=bool(dry_run or settings.dry_run))
            recorder = build_action_recorder(settings, clients)
            recorder.record(report.outcomes, source="Cli", dry_run=report.dry_run)
    elif args.command == "handle-event":
        try:
            events = read_events(_read_source(args.source))
        except (OSError, UnicodeDecodeError, InvalidEvent) as exc:
            print(f"error: {args.source}: {exc}", file=sys.stderr)
            return 2
        with build_clients(settings) as clients:
            worker = build_protect_vm(settings, clients, dry_run=dry_run)
            report = handle_events(
                events,
                worker,
                dry_run=bool(dry_run or settings.dry_run),
                recheck_s=settings.provisioning_recheck_s,
            )
            recorder = build_action_recorder(settings, clients)
            recorder.record(report.outcomes, source="Cli", dry_run=report.dry_run)
    else:
        report, complete = _sweep(settings, dry_run, args.workers)
        if not complete:
            print("error: the sweep queue was not drained before the timeout", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(report.to_json()))
    else:
        print(render_table(report))
    return 0 if complete else 1


def _root_cause(exc: BaseException) -> str:
    """The class of the innermost chained cause (the SDK's error under an adapter's)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return type(exc).__name__


def _sweep(settings: Settings, dry_run: bool | None, workers: int) -> tuple[RunReport, bool]:
    """Plan; handle a small plan here, or enqueue a large one and drain it with `workers` threads.

    Each decision is recorded as it is made, as the timer does, so a CLI run stopped part-way keeps
    the record of what it did; the run record is written last."""
    with build_clients(settings) as clients:
        fanout = build_sweep_fanout(settings, clients, dry_run=dry_run, workers=workers)
        worker = build_sweep_worker(settings, clients, workers=workers)
        recorder = build_action_recorder(settings, clients)

        def record(outcomes: list[Outcome]) -> None:
            recorder.record(outcomes, source="Cli", dry_run=fanout.sweep.config.dry_run)

        planned, drained = sweep_and_drain(fanout, worker, DrainConfig(workers=workers), record=record)
        record([planned.run_record()])
    return planned.report, not drained.timed_out


def _demo() -> int:
    """The demo lives in the checkout's dev tools (devtools/), which are not deployed: it is looked up
    at run time, so the deployed app never imports it and says so plainly where it is absent."""
    try:
        demo = importlib.import_module("devtools.demo")
    except ModuleNotFoundError as exc:
        if exc.name not in {"devtools", "devtools.demo"}:
            raise
        print(
            "error: the demo is a development tool and is not deployed; run `make demo` in a checkout",
            file=sys.stderr,
        )
        return 2
    return int(demo.run_demo())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, not {value}")
    return value


def _window(text: str) -> timedelta:
    try:
        window = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if window <= timedelta(0):
        raise argparse.ArgumentTypeError(f"the window must be longer than 0: {text!r}")
    if window > MAX_REPORT_WINDOW:
        raise argparse.ArgumentTypeError(
            f"the window must be at most {MAX_REPORT_WINDOW.days}d: {text[:100]!r}"
        )
    return window


def _report(settings: Settings, window: timedelta, output: str) -> int:
    with build_clients(settings) as clients:
        try:
            report = build_outcome_report(report_query(settings, clients), window)
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except AzureCallError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(report.to_json()) if output == "json" else render_report_table(report))
    return 0


def _coverage(settings: Settings, output: str) -> int:
    """Read-only: proposes, never acts. Exit 1 when a scope could not be read (the figures then
    leave it out), with one line and nothing else when nothing could be read at all."""

    with build_clients(settings) as clients:
        try:
            scan = build_coverage(settings, clients, progress=_coverage_progress).run()
        except AzureCallError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        history = _coverage_history(settings, clients, scan) if output == "html" else []
    if scan.failures and not scan.classifications:
        failure = scan.failures[0]
        print(f"error: nothing could be read ({failure.scope}: {failure.error})", file=sys.stderr)
        return 1
    if output == "html":
        print(render_coverage_html(scan, history=history), end="")
    else:
        print(json.dumps(scan.to_json()) if output == "json" else render_coverage_table(scan))
    return 0 if scan.complete else 1


def _reconcile(settings: Settings, output: str, *, dry_run: bool) -> int:
    """`coverage --act`: the coverage read, then each proposed action taken and recorded as it is
    decided. Exit 1 when a scope could not be read or a decision failed."""

    with build_clients(settings) as clients:
        reconciler = build_reconciler(settings, clients, dry_run=dry_run, progress=_coverage_progress)
        recorder = build_action_recorder(settings, clients)

        def record(outcomes: list[Outcome]) -> None:
            recorder.record(outcomes, source="Cli", dry_run=dry_run)

        result = reconciler.run(record)
        if result.scan is not None:  # the figures on their way to BackupCoverage_CL
            coverage_recorder = build_coverage_recorder(settings, clients)
            coverage_recorder.record(
                result.scan, run_id=result.report.run_id, dry_run=dry_run, vault_ids=result.vaults_acted_in()
            )
        if output == "html" and result.scan is not None:
            history = _coverage_history(settings, clients, result.scan)
    report, scan = result.report, result.scan
    if scan is None:
        failure = report.failure
        print(f"error: {failure.reason if failure else 'nothing could be read'}", file=sys.stderr)
        return 1
    if output == "html":
        print(render_coverage_html(scan, history=history, actions=report), end="")
    elif output == "json":
        print(json.dumps({"coverage": scan.to_json(), "actions": report.to_json()}))
    else:
        print(render_coverage_table(scan) + "\n\n" + render_table(report))
    failed = any(outcome.result is Result.FAILED for outcome in report.outcomes)
    return 0 if scan.complete and not failed else 1


def _coverage_progress(message: str) -> None:
    """Progress of a long scan, on stderr: stdout carries the table, JSON or page."""
    print(f"coverage: {message}", file=sys.stderr, flush=True)


def _coverage_history(settings: Settings, clients: AzureClients, scan: CoverageScan) -> list[CoveragePoint]:
    """The chart's points: each earlier run's total from BackupCoverage_CL, then this scan's. Without
    a workspace, or when the query fails, this scan's point alone (said on stderr): the page is still
    worth having."""
    now = [scan_point(scan)]
    if not settings.workspace_id:
        _coverage_progress("no BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: the chart shows this scan only")
        return now
    try:
        earlier = coverage_trend(report_query(settings, clients), COVERAGE_HISTORY)
    except AzureCallError as exc:
        _coverage_progress(f"coverage history not read ({exc}): the chart shows this scan only")
        return now
    return [point for point in earlier if point.at < scan.at] + now


def render_coverage_table(scan: CoverageScan) -> str:
    """One line per VM (state, proposed action, time without a recovery point, reason), then the totals."""
    rows = [("VM", "SUBSCRIPTION", "STATE", "ACTION", "WITHOUT RP", "REASON")]
    for c in scan.classifications:
        without = c.time_without_recovery_point
        rows.append(
            (
                c.vm.name,
                c.vm.subscription_id,
                c.state.value,
                c.action.value,
                "unknown" if without is None else _hours_text(without),
                c.reason + (f"; {c.recommendation}" if c.recommendation else ""),
            )
        )
    report = scan.report
    figures = [("COVERAGE", "IN SCOPE", "WITHIN RPO", "PERCENT")]
    for figure in (report.total, *report.by_subscription, *report.by_region):
        percent = figure.percent
        figures.append(
            (
                figure.scope,
                str(figure.in_scope),
                str(figure.covered),
                "-" if percent is None else f"{percent:.1f}%",
            )
        )
    lines = [text_table(rows), "", text_table(figures)]
    for failure in scan.failures:
        lines.append(f"not read: {failure.scope}: {failure.error}")
    return "\n".join(lines)


def _hours_text(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h"


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    with open(source, encoding="utf-8") as handle:
        return handle.read()


def render_table(report: RunReport, names: dict[str, str] | None = None) -> str:
    """One line per VM: what the sweep did and why, then the summary."""
    names = names or {}
    rows = [("VM", "RESULT", "REASON", "JOB / ERROR")]
    for outcome in sorted(report.outcomes, key=lambda o: (o.vault_id, o.vm_id)):
        vm = names.get(outcome.vm_id) or outcome.vm_id.rsplit("/", 1)[-1] or outcome.vault_id
        detail = outcome.job_id or (
            f"{outcome.error_code}: {outcome.error_message}" if outcome.error_code else ""
        )
        rows.append((vm, outcome.result.value, outcome.reason, detail))
    lines = [text_table(rows)]
    summary = report.summary()
    lines.append("")
    lines.append(
        f"run {report.run_id}{' (dry run)' if report.dry_run else ''}: {summary['candidates']} candidates, "
        + ", ".join(
            f"{count} {key}"
            for key, count in summary.items()
            if isinstance(count, int) and key not in ("candidates", "outcomes")
        )
    )
    return "\n".join(lines)
