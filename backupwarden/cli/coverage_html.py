"""The page `backupwarden coverage --output html` prints: one self-contained HTML file with the totals,
coverage over time and by subscription as charts, the worst offenders and every VM.

Written by hand, charts included, rather than with a template engine or a chart library: the page must
open anywhere with no network and no script (an operator mails it, a pipeline archives it), and two
inline SVG charts are a few dozen lines of Python where a library would be a dependency of the
deployed app. Every value from Azure (names, reasons, errors) goes through `html.escape`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape

from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.coverage import CoverageFigure, CoveragePoint
from backupwarden.domain.protection_states import Classification
from backupwarden.domain.records import Outcome
from backupwarden.domain.times import as_utc
from backupwarden.flows.coverage import CoverageScan
from backupwarden.flows.run_report import RunReport

CHART_WIDTH = 720
TREND_HEIGHT = 260
TREND_MARGIN = (16, 24, 44, 56)  # top, right, bottom, left
BAR_ROW = 30
BAR_LABEL_WIDTH = 300
BAR_WIDTH = 300

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24; margin: 2rem; }
h1 { font-size: 1.6rem; margin: 0 0 .5rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; }
.totals { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.totals div { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem 1rem; min-width: 8rem; }
.totals dt { color: #57606a; font-size: .85rem; }
.totals dd { margin: 0; font-size: 1.4rem; font-weight: 600; }
.complete { color: #1a7f37; } .incomplete { color: #cf222e; }
svg { max-width: 100%; height: auto; font-size: 12px; }
svg .axis { stroke: #d0d7de; } svg text { fill: #57606a; }
svg .line { fill: none; stroke: #0969da; stroke-width: 2; } svg .point { fill: #0969da; }
svg .track { fill: #eaeef2; } svg .bar { fill: #1a7f37; } svg .bar.low { fill: #cf222e; }
svg .latest { fill: #0969da; font-weight: 600; }
svg .label { fill: #1b1f24; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border-bottom: 1px solid #d0d7de; padding: .35rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f6f8fa; }
.state, .action { font-family: ui-monospace, monospace; font-size: .85rem; white-space: nowrap; }
tr.uncovered th[scope=row] { border-left: 4px solid #cf222e; }
tr.covered th[scope=row] { border-left: 4px solid #1a7f37; }
.id { font-family: ui-monospace, monospace; font-size: .8rem; white-space: nowrap; }
.reason { overflow-wrap: anywhere; } .muted { color: #57606a; }
.fix { display: block; color: #57606a; font-size: .9rem; }
"""


def render_coverage_html(
    scan: CoverageScan, history: Sequence[CoveragePoint], actions: RunReport | None = None
) -> str:
    """The page for one scan; `history` is the coverage of past runs (any order), `actions` what the
    reconciler did, when it acted."""
    title = f"Backup coverage, {_when(scan.at)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>{_totals(scan, actions)}</header>",
        "<main>",
        "<section><h2>Coverage over time</h2>",
        _trend_chart(history),
        "</section>",
        "<section><h2>Coverage by subscription</h2>",
        _subscription_chart(scan),
        "</section>",
        "<section><h2>Worst offenders</h2>",
        _offenders(scan.report.worst_offenders),
        "</section>",
        "<section><h2>Every VM</h2>",
        _vm_table(scan, actions),
        "</section>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _totals(scan: CoverageScan, actions: RunReport | None) -> str:
    total = scan.report.total
    cells = [
        ("In scope", str(total.in_scope)),
        ("Within RPO", str(total.covered)),
        ("Coverage", _percent_text(total)),
        ("Measured", _when(scan.at)),
    ]
    figures = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in cells)
    lines = [f'<dl class="totals">{figures}</dl>']
    if scan.complete:
        lines.append('<p class="complete">Complete: every scope was read.</p>')
    else:
        unread = "".join(f"<li>{escape(f.scope)}: {escape(f.error)}</li>" for f in scan.failures)
        lines.append(
            '<p class="incomplete">Incomplete: these scopes were not read and the figures leave them out:</p>'
            f"<ul>{unread}</ul>"
        )
    if actions is not None:
        mode = " (dry run: nothing was changed)" if actions.dry_run else ""
        lines.append(
            f"<p>Run {escape(actions.run_id)}{mode}: {len(actions.outcomes)} decisions, "
            f"{escape(actions.counts())}.</p>"
        )
    return "".join(lines)


def _trend_chart(history: Sequence[CoveragePoint]) -> str:
    points = sorted(history, key=lambda p: p.at)
    measured = [p for p in points if p.percent is not None]
    if not measured:
        return '<p class="muted">No coverage measured yet: the chart starts with the first VMs in scope.</p>'
    top, right, bottom, left = TREND_MARGIN
    plot_w, plot_h = CHART_WIDTH - left - right, TREND_HEIGHT - top - bottom
    first, last = measured[0].at, measured[-1].at
    span = (last - first).total_seconds()

    def x(point: CoveragePoint) -> float:
        return left + (plot_w / 2 if span == 0 else plot_w * (point.at - first).total_seconds() / span)

    def y(percent: float) -> float:
        return top + plot_h * (1 - percent / 100)

    shapes = []
    for level in (0, 25, 50, 75, 100):
        shapes.append(
            f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
            f'<text x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end">{level}%</text>'
        )
    if len(measured) > 1:
        path = " ".join(f"{x(p):.1f},{y(p.percent or 0):.1f}" for p in measured)
        shapes.append(f'<polyline class="line" points="{path}"/>')
    for p in measured:
        percent = p.percent or 0
        shapes.append(
            f'<circle class="point" cx="{x(p):.1f}" cy="{y(percent):.1f}" r="4">'
            f"<title>{escape(_when(p.at))}: {percent:.1f}% ({p.covered} of {p.in_scope})</title></circle>"
        )
    latest = measured[-1]
    anchor = "middle" if span == 0 else "end"
    shapes.append(
        f'<text class="latest" x="{x(latest):.1f}" y="{y(latest.percent or 0) - 10:.1f}" '
        f'text-anchor="{anchor}">{latest.percent or 0:.1f}%</text>'
    )
    base = TREND_HEIGHT - bottom + 18
    if span == 0:
        shapes.append(
            f'<text x="{left + plot_w / 2}" y="{base}" text-anchor="middle">{escape(_when(first))}</text>'
        )
    else:
        shapes.append(f'<text x="{left}" y="{base}">{escape(_when(first))}</text>')
        shapes.append(f'<text x="{left + plot_w}" y="{base}" text-anchor="end">{escape(_when(last))}</text>')
    skipped = len(points) - len(measured)
    note = f" {skipped} runs had no VM in scope and are not drawn." if skipped else ""
    description = (
        f"{len(measured)} measurements from {_when(first)} to {_when(last)}; "
        f"latest {measured[-1].percent or 0:.1f}%.{note}"
    )
    return (
        f'<svg class="trend" role="img" aria-labelledby="trend-title trend-desc" '
        f'viewBox="0 0 {CHART_WIDTH} {TREND_HEIGHT}" width="{CHART_WIDTH}" height="{TREND_HEIGHT}">'
        '<title id="trend-title">Coverage over time</title>'
        f'<desc id="trend-desc">{escape(description)}</desc>' + "".join(shapes) + "</svg>"
    )


def _subscription_chart(scan: CoverageScan) -> str:
    """One bar per subscription with VMs in scope; a subscription whose VMs are all excluded (or gone)
    says "no VMs", one that could not be read says "not read": neither is 0%."""
    rows: dict[str, CoverageFigure | str] = {}
    for c in scan.classifications:
        rows[c.vm.subscription_id.lower()] = "no VMs"
    for failure in scan.failures:
        if failure.scope.lower().startswith("/subscriptions/") and failure.scope.count("/") == 2:
            rows[failure.scope.rsplit("/", 1)[-1].lower()] = "not read"
    for figure in scan.report.by_subscription:
        rows[figure.scope] = figure if figure.in_scope else "no VMs"
    if not rows:
        return '<p class="muted">No subscription in scope.</p>'
    height = BAR_ROW * len(rows) + 8
    shapes = []
    for n, (subscription, row) in enumerate(sorted(rows.items())):
        y = 4 + n * BAR_ROW
        middle = y + BAR_ROW / 2 + 4
        shapes.append(f'<text class="label" x="0" y="{middle:.0f}">{escape(subscription)}</text>')
        bar_box = f'x="{BAR_LABEL_WIDTH}" y="{y + 6}" height="{BAR_ROW - 12}"'
        track = f'<rect class="track" {bar_box} width="{BAR_WIDTH}"/>'
        if isinstance(row, str):
            shapes.append(
                f'{track}<text class="no-vms" x="{BAR_LABEL_WIDTH + 8}" y="{middle:.0f}">{escape(row)}</text>'
            )
            continue
        percent = row.percent or 0
        low = " low" if percent < 100 else ""
        shapes.append(
            f'{track}<rect class="bar{low}" {bar_box} width="{BAR_WIDTH * percent / 100:.1f}">'
            f"<title>{escape(subscription)}: {percent:.1f}% ({row.covered} of {row.in_scope})</title></rect>"
            f'<text x="{BAR_LABEL_WIDTH + BAR_WIDTH + 8}" y="{middle:.0f}">'
            f"{percent:.1f}% ({row.covered} of {row.in_scope})</text>"
        )
    return (
        f'<svg class="by-subscription" role="img" aria-labelledby="subs-title" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" width="{CHART_WIDTH}" height="{height}">'
        f'<title id="subs-title">Coverage by subscription: VMs within RPO of VMs in scope</title>'
        + "".join(shapes)
        + "</svg>"
    )


def _offenders(offenders: Sequence[Classification]) -> str:
    if not offenders:
        return '<p class="complete">None: every VM in scope has a recovery point within its RPO.</p>'
    rows = "".join(
        f'<tr class="{"covered" if c.within_rpo else "uncovered"}"><th scope="row">{escape(c.vm.name)}</th>'
        f'<td class="id">{escape(c.vm.subscription_id)}</td>'
        f'<td class="state">{escape(c.state.value)}</td>'
        f"<td>{escape(_without_text(c.time_without_recovery_point))}</td>"
        f'<td class="reason">{_reason_html(c)}</td></tr>'
        for c in offenders
    )
    return (
        '<table class="offenders">'
        "<caption>VMs without a recovery point within their RPO, longest first</caption>"
        '<thead><tr><th scope="col">VM</th><th scope="col">Subscription</th><th scope="col">State</th>'
        '<th scope="col">Without a recovery point</th><th scope="col">Reason</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _vm_table(scan: CoverageScan, actions: RunReport | None) -> str:
    done = _outcomes_by_vm(actions.outcomes if actions else ())
    headings = ["VM", "Subscription", "Region", "State", "Action", "Without a recovery point", "Reason"]
    if actions is not None:
        headings.append("Done")
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headings)
    rows = []
    for c in scan.classifications:
        covered = "covered" if c.within_rpo else "uncovered"
        cells = [
            f'<th scope="row" title="{escape(c.vm.id)}">{escape(c.vm.name)}</th>',
            f'<td class="id">{escape(c.vm.subscription_id)}</td>',
            f"<td>{escape(c.vm.region)}</td>",
            f'<td class="state">{escape(c.state.value)}</td>',
            f'<td class="action">{escape(c.action.value)}</td>',
            f"<td>{escape(_without_text(c.time_without_recovery_point))}</td>",
            f'<td class="reason">{_reason_html(c)}</td>',
        ]
        if actions is not None:
            cells.append(f"<td>{_done_html(done.get(arm_key(c.vm.id), []))}</td>")
        rows.append(f'<tr class="vm {covered}">{"".join(cells)}</tr>')
    caption = (
        f"{len(scan.classifications)} VMs and items: state, proposed action and why "
        "(green edge: a recovery point within the RPO; red: none)"
    )
    return (
        f'<table class="vms"><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _outcomes_by_vm(outcomes: Iterable[Outcome]) -> dict[str, list[Outcome]]:
    by_vm: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.vm_id:
            by_vm.setdefault(arm_key(outcome.vm_id), []).append(outcome)
    return by_vm


def _done_html(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return '<span class="muted">nothing</span>'
    lines = []
    for o in outcomes:
        detail = o.job_id or (f"{o.error_code}: {o.error_message or ''}" if o.error_code else "")
        text = f"{o.action} {o.result.value}: {o.reason}" + (f" ({detail})" if detail else "")
        lines.append(f'<div class="done">{escape(text)}</div>')
    return "".join(lines)


def _reason_html(c: Classification) -> str:
    fix = f'<span class="fix">{escape(c.recommendation)}</span>' if c.recommendation else ""
    return escape(c.reason) + fix


def _percent_text(figure: CoverageFigure) -> str:
    percent = figure.percent
    return "no VMs in scope" if percent is None else f"{percent:.1f}%"


def _without_text(period: timedelta | None) -> str:
    if period is None:
        return "unknown"
    hours = period.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def scan_point(scan: CoverageScan) -> CoveragePoint:
    """The scan's total as a point of the coverage-over-time chart."""
    total = scan.report.total
    return CoveragePoint(at=scan.at, in_scope=total.in_scope, covered=total.covered)


def _when(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")
