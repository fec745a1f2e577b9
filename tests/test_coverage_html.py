"""`backupwarden coverage --output html`: the page's content (escaping, the trend with 0, 1 or many
points, a subscription with no VM in scope, what was done) and the page as Debian's headless Chromium
renders it from a real scan of the emulator (`make browser` installs Chromium; no skip without it).

The screenshot's PNG is decoded here with zlib rather than an imaging library: only its first rows
are needed (stop once the charts' colours are seen), and the suite needs no image dependency for it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from backupwarden.cli.coverage_html import render_coverage_html, scan_point
from backupwarden.domain.coverage import CoveragePoint, coverage
from backupwarden.domain.protection_states import Action, Classification, VmFacts, VmState
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.coverage import CoverageScan, ScopeFailure
from backupwarden.flows.run_report import RunReport
from emulator import EmulatorServer
from emulator.resourcegraph.models import ResourceGraphBackend
from tests.test_coverage_cli import run_coverage
from tests.test_coverage_flow import ESTATE_A, ESTATE_B, SUB_A, SUB_B, scenario
from tests.test_reconcile_flow import TO_BACK_UP, TO_ESCALATE, Reconciling, reconciling  # noqa: F401

SUB_C = "33333333-3333-4333-8333-333333333333"  # its only VM is excluded: "no VMs", not 0%
INJECTED = "<script>alert(1)</script>"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BAR_GREEN = (0x1A, 0x7F, 0x37)  # .bar in the page's style
BAR_RED = (0xCF, 0x22, 0x2E)  # .bar.low
TREND_BLUE = (0x09, 0x69, 0xDA)  # .line and .point


@dataclass(frozen=True)
class Element:
    tag: str
    attrs: dict[str, str]
    text: str


class Elements(HTMLParser):
    """Every element of a document with its attributes and its own text (not its children's)."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.found: list[Element] = []
        self._open: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append(Element(tag, {k: v or "" for k, v in attrs}, ""))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, attrs, text = self._open.pop()
            self.found.append(Element(name, attrs, "".join(text)))
            if name == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)

    def all(self, tag: str, css_class: str | None = None) -> list[Element]:
        return [
            e
            for e in self.found
            if e.tag == tag and (css_class is None or css_class in e.attrs.get("class", "").split())
        ]


# ---- the renderer, from hand-built classifications


def vm(
    name: str, subscription: str = SUB_A, *, state: VmState = VmState.STALE, within: bool = False
) -> Classification:
    return Classification(
        vm=VmFacts(
            id=f"/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
            name=name,
            subscription_id=subscription,
            region="westeurope",
            resource_group="rg",
        ),
        state=state,
        reason=f"{name}: the newest recovery point is 3 days old",
        action=Action.NONE if within else Action.BACKUP_NOW,
        recommendation="" if within else "Back up now & check the <policy>",
        time_without_recovery_point=timedelta(hours=6 if within else 72),
        within_rpo=within,
    )


def hand_scan(*classifications: Classification, failures: tuple[ScopeFailure, ...] = ()) -> CoverageScan:
    return CoverageScan(
        at=AT,
        classifications=classifications,
        report=coverage(classifications),
        failures=failures,
        requests=1,
    )


def test_values_from_azure_are_text_never_markup() -> None:
    page = render_coverage_html(hand_scan(vm(INJECTED), vm("ok", within=True)), history=[])

    parsed = Elements(page)
    assert parsed.all("script") == []
    assert INJECTED not in page
    assert [e.text for e in parsed.all("th") if e.attrs.get("scope") == "row"].count(
        INJECTED
    ) == 2  # offender, VM
    assert "Back up now &amp; check the &lt;policy&gt;" in page


def test_no_history_says_so_instead_of_an_empty_chart() -> None:
    page = render_coverage_html(hand_scan(vm("a")), history=[])

    parsed = Elements(page)
    assert parsed.all("svg", "trend") == []
    assert "No coverage measured yet" in page


def test_one_point_is_one_dot_without_a_line() -> None:
    page = render_coverage_html(hand_scan(vm("a")), history=[CoveragePoint(AT, in_scope=4, covered=3)])

    parsed = Elements(page)
    assert len(parsed.all("svg", "trend")) == 1
    assert len(parsed.all("circle", "point")) == 1
    assert parsed.all("polyline", "line") == []
    assert "2026-12-01 09:00 UTC: 75.0% (3 of 4)" in [e.text for e in parsed.all("title")]
    assert [e.text for e in parsed.all("text", "latest")] == ["75.0%"]


def test_many_points_are_a_line_in_time_order_and_runs_without_vms_are_left_out() -> None:
    history = [
        CoveragePoint(AT - timedelta(days=2), in_scope=10, covered=2),
        CoveragePoint(AT, in_scope=10, covered=10),
        CoveragePoint(AT - timedelta(days=1), in_scope=0, covered=0),  # no VM in scope: no point
        CoveragePoint(AT - timedelta(days=3), in_scope=10, covered=5),
    ]

    parsed = Elements(render_coverage_html(hand_scan(vm("a")), history=history))

    points = parsed.all("circle", "point")
    assert len(points) == 3
    xs = [float(p.attrs["cx"]) for p in points]
    ys = [float(p.attrs["cy"]) for p in points]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert ys[2] < ys[0] < ys[1]  # 100% highest, then 50%, then 20% (SVG's y grows downwards)
    (line,) = parsed.all("polyline", "line")
    assert len(line.attrs["points"].split()) == 3
    assert "1 runs had no VM in scope" in parsed.all("desc")[0].text


def test_a_subscription_with_no_vm_in_scope_says_no_vms_and_an_unread_one_not_read() -> None:
    scan = hand_scan(
        vm("a", within=True),
        vm("b"),
        vm("skipped", SUB_B, state=VmState.EXCLUDED, within=True),
        failures=(ScopeFailure(f"/subscriptions/{SUB_C}", "503 Service Unavailable"),),
    )

    parsed = Elements(render_coverage_html(scan, history=[scan_point(scan)]))

    (bar,) = parsed.all("rect", "bar")
    assert float(bar.attrs["width"]) == pytest.approx(150.0)  # 50% of the bar's 300
    assert [e.text for e in parsed.all("text", "no-vms")] == ["no VMs", "not read"]
    labels = [e.text for e in parsed.all("text", "label")]
    assert labels == sorted([SUB_A, SUB_B, SUB_C])
    assert [e.text for e in parsed.all("text") if "%" in e.text and " of " in e.text] == ["50.0% (1 of 2)"]
    assert "503 Service Unavailable" in " ".join(e.text for e in parsed.all("li"))


def test_what_was_done_is_shown_per_vm() -> None:
    scan = hand_scan(vm("a"), vm("b"))
    report = RunReport(run_id="run-1", dry_run=False, started=AT, candidates=1)
    report.outcomes.append(
        Outcome(
            "run-1",
            scan.classifications[0].vm.id.upper(),
            "vault",
            "reconcile_backup_now",
            Result.TRIGGERED,
            "stale",
            job_id="job-<1>",
        )
    )

    parsed = Elements(render_coverage_html(scan, history=[], actions=report))

    assert [e.text for e in parsed.all("th") if e.attrs.get("scope") == "col"][-1] == "Done"
    assert [e.text for e in parsed.all("div", "done")] == ["reconcile_backup_now triggered: stale (job-<1>)"]
    assert [e.text for e in parsed.all("span", "muted")] == ["nothing"]  # b: nothing was done


def test_the_reconcilers_run_is_shown_per_vm(reconciling: Reconciling) -> None:  # noqa: F811
    result = reconciling.run()
    assert result.scan is not None

    page = render_coverage_html(result.scan, history=[scan_point(result.scan)], actions=result.report)

    done: dict[str, list[str]] = {}
    for row in re.findall(r'<tr class="vm .*?</tr>', page):
        cells = Elements(row)
        (name,) = [e.text for e in cells.all("th")]
        done[name] = [e.text.split(":")[0] for e in cells.all("div", "done")]
    assert {name for name, what in done.items() if "reconcile_backup_now triggered" in what} == TO_BACK_UP
    assert {name for name, what in done.items() if "reconcile_escalate escalated" in what} == TO_ESCALATE
    assert f"Run {result.report.run_id}: " in page


# ---- the page of a real scan, in a real browser


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is not installed: `make browser` installs it (apt-get install chromium)")
    return found


def run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Rendered:
    page: str  # what the CLI printed
    dom: str  # the document as Chromium parsed it
    screenshot: Path


@pytest.fixture(scope="module")
def rendered(emulator_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    emulator = emulator_server.emulator
    emulator.reset()
    emulator.backend(ResourceGraphBackend).quota_per_5s = 1000
    estate = scenario(start=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"))
    estate["subscriptions"][1]["vms"].append(
        {"name": INJECTED, "location": "northeurope", "resource_group": "rg-a"}
    )
    estate["subscriptions"].append(
        {
            "id": SUB_C,
            "vms": [
                {
                    "name": "cskipped",
                    "location": "westeurope",
                    "resource_group": "rg-c",
                    "tags": {"backupwarden:skip": "true"},
                }
            ],
        }
    )
    emulator.load_scenario(estate)
    try:
        done = run_coverage(
            emulator_server, "--output", "html", BACKUPWARDEN_SUBSCRIPTIONS=f"{SUB_A},{SUB_B},{SUB_C}"
        )
    finally:
        with emulator.lock:
            emulator.clock.set(emulator.clock.now(), scale=1.0)
    assert done.returncode == 0, done.stderr
    assert "coverage: read" in done.stderr  # progress on stderr, the page alone on stdout
    directory = tmp_path_factory.mktemp("coverage-html")
    page = directory / "coverage.html"
    page.write_text(done.stdout, encoding="utf-8")
    dom = run_chromium(directory / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    screenshot = directory / "coverage.png"
    shot = run_chromium(
        directory / "profile", f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri()
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr
    yield Rendered(done.stdout, dom.stdout, screenshot)


def test_the_page_renders_with_both_charts_and_every_vm(rendered: Rendered) -> None:
    dom = Elements(rendered.dom)

    assert dom.all("title")[0].text.startswith("Backup coverage, ")
    assert len(dom.all("svg", "by-subscription")) == 1
    assert len(dom.all("rect", "bar")) == 2  # SUB_A and SUB_B; SUB_C has no VM in scope
    assert [e.text for e in dom.all("text", "no-vms")] == ["no VMs"]
    assert len(dom.all("svg", "trend")) == 1 and len(dom.all("circle", "point")) == 1
    vms = set(ESTATE_A) | set(ESTATE_B) | {INJECTED, "cskipped"}  # "gone" is an item whose VM is gone
    assert len(dom.all("tr", "vm")) == len(vms)
    assert vms <= {e.text for e in dom.all("th") if e.attrs.get("scope") == "row"}
    assert "Complete: every scope was read." in rendered.dom


def test_an_injected_vm_name_is_text_in_the_browser(rendered: Rendered) -> None:
    dom = Elements(rendered.dom)

    assert dom.all("script") == []
    assert INJECTED in [e.text for e in dom.all("th")]


def test_the_screenshot_shows_the_charts(rendered: Rendered) -> None:
    colours = png_colours(rendered.screenshot, until={BAR_GREEN, TREND_BLUE})

    assert len(colours) > 1, "the screenshot is blank"
    assert TREND_BLUE in colours, "the trend chart's point is not painted"
    assert BAR_GREEN in colours or BAR_RED in colours, "no subscription bar is painted"


def png_colours(path: Path, until: set[tuple[int, int, int]]) -> set[tuple[int, int, int]]:
    """The RGB colours of the image's rows from the top, until every colour of `until` was seen."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    size = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * size
    previous = bytearray(stride)
    seen: set[tuple[int, int, int]] = set()
    for y in range(height):
        start = y * (stride + 1)
        row = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, size)
        seen.update(zip(row[0::size], row[1::size], row[2::size], strict=True))
        if until <= seen:
            break
        previous = row
    return seen


def unfilter(kind: int, row: bytearray, above: bytearray, size: int) -> bytearray:
    """A PNG row without its filter (PNG spec, section 9)."""
    if kind == 1:
        for i in range(size, len(row)):
            row[i] = (row[i] + row[i - size]) & 0xFF
    elif kind == 2:
        row = bytearray((a + b) & 0xFF for a, b in zip(row, above, strict=True))
    elif kind == 3:
        for i in range(len(row)):
            left = row[i - size] if i >= size else 0
            row[i] = (row[i] + (left + above[i]) // 2) & 0xFF
    elif kind == 4:
        for i in range(len(row)):
            a = row[i - size] if i >= size else 0
            b, c = above[i], above[i - size] if i >= size else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return row
