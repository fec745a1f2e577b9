"""The command line: the same code paths as the Functions triggers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from backupwarden.clients import AzureClients
from backupwarden.settings import Settings, SettingsError
from backupwarden.sweep import SweepReport
from backupwarden.wiring import build_sweep


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backupwarden", description="Make sure every Azure VM is backed up."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="trigger the initial backup of VMs stuck in IRPending")
    sweep.add_argument("--dry-run", action="store_true", help="decide and report, but trigger nothing")
    sweep.add_argument("--output", choices=("table", "json"), default="table")
    commands.add_parser("demo", help="run the sweep against the embedded emulator and Azurite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "demo":
        from backupwarden.demo import run_demo

        return run_demo()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with AzureClients(settings) as clients:
        report = build_sweep(settings, clients, dry_run=True if args.dry_run else None).run()
    if args.output == "json":
        print(json.dumps(report.to_json()))
    else:
        print(render_table(report))
    return 0


def render_table(report: SweepReport, names: dict[str, str] | None = None) -> str:
    """One line per VM: what the sweep did and why, then the summary."""
    names = names or {}
    rows = [("VM", "RESULT", "REASON", "JOB / ERROR")]
    for outcome in sorted(report.outcomes, key=lambda o: (o.vault_id, o.vm_id)):
        vm = names.get(outcome.vm_id) or outcome.vm_id.rsplit("/", 1)[-1] or outcome.vault_id
        detail = outcome.job_id or (
            f"{outcome.error_code}: {outcome.error_message}" if outcome.error_code else ""
        )
        rows.append((vm, outcome.result.value, outcome.reason, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    summary = report.summary()
    lines.append("")
    lines.append(
        f"run {report.run_id}{' (dry run)' if report.dry_run else ''}: {summary['candidates']} candidates, "
        + ", ".join(f"{summary[k]} {k}" for k in ("triggered", "skipped", "dry_run", "failed"))
    )
    return "\n".join(lines)
