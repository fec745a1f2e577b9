"""Outcomes shipping: 100,000 records through the outbox into Log Analytics (docs/benchmarks.md).

`python -m bench.outcomes [--records 100000] [--job-share 0.6] [--fill-workers 1]`

What runs, the way production runs it:
- the emulator in a SUBPROCESS (`python -m emulator serve`) with a scenario declaring the workspace,
  tables and DCR of infra/app/monitoring.bicep, so its memory is not this process's; Azurite (node);
- fill: `--records` realistic rows (bench/outcome_records.py: job outcomes and automation decisions,
  built by the project's row builders) queued with `Outbox.add`, 1,000 rows per call (batch
  transactions of 100);
- ship: the real `Shipper` + `LogsUploader` (azure-monitor-ingestion `LogsIngestionClient`) for
  both streams, over HTTPS to the emulator's Logs Ingestion endpoint.

Figures:
- upload calls: POSTs to the ingestion route in the emulator's request log during the ship phase;
- min calls: ceil(total JSON bytes / 1 MiB), bytes counted as the SDK counts them when it chunks
  (`len(json.dumps(row))` per row, on the rows as generated); the ship phase's own count is shown too;
- records/s: records / wall time of each phase;
- peak RSS: this process's high-water mark (VmHWM; ru_maxrss where /proc cannot reset it), for the
  whole run and for the ship phase alone (the mark is reset before it).
Correctness is checked through LogsQueryClient: rows per table, distinct RecordIds, no duplicates,
and an empty outbox. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from azure.data.tables import TableClient

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.logs_ingestion import MAX_UPLOAD_BYTES, LogsUploader, row_json, row_size
from backupwarden.adapters.azure.logs_query import LogsQuery
from backupwarden.adapters.storage.outbox import Outbox, PendingRecord
from backupwarden.domain.log_schema import TABLES, table_for_stream
from backupwarden.flows.outcomes.shipper import Shipper, ShipResult
from backupwarden.settings import Settings
from bench.outcome_records import outcome_records
from emulator.azurite import Azurite

WORKSPACE_ID = "7d1c3a52-9a0e-4b8e-8f0e-3c5b2a1d9e44"
DCR_ID = "dcr-0be7c4a1e2f3456789abcdef01234567"
INGESTION_ROUTE = "/dataCollectionRules/{ruleId}/streams/{stream}"
FILL_CHUNK = 1_000
TARGET_CALLS_RATIO = 1.1
TARGET_PEAK_RSS_MB = 200.0
MIB = 1024 * 1024


# --- the emulator, in its own process ------------------------------------------------------------
def monitor_scenario() -> dict[str, Any]:
    """The workspace, tables and DCR as infra/app/monitoring.bicep deploys them; rows visible at once."""
    streams = {
        table.stream: {
            "columns": [{"name": c.name, "type": c.type} for c in table.columns],
            "output_table": table.table,
            "workspace": "law-backupwarden",
        }
        for table in TABLES
    }
    return {
        "name": "bench-outcomes",
        "monitor": {
            "ingestion_delay_s": 0,
            "workspaces": [{"name": "law-backupwarden", "id": WORKSPACE_ID}],
            "dcrs": [{"name": "dcr-backupwarden", "immutable_id": DCR_ID, "streams": streams}],
        },
    }


@dataclass
class EmulatorProcess:
    endpoint: str
    ca_bundle: str

    def admin(self, method: str, path: str) -> Any:
        url = f"{self.endpoint}/_emulator/{path}"
        response = requests.request(method, url, verify=self.ca_bundle, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None


@contextmanager
def emulator_process(workdir: Path) -> Iterator[EmulatorProcess]:
    scenario = workdir / "scenario.json"
    scenario.write_text(json.dumps(monitor_scenario()), encoding="utf-8")
    output = workdir / "emulator.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "serve", "--scenario", str(scenario)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        described = _first_json_line(output, process)
        yield EmulatorProcess(described["endpoint"], described["ca_bundle"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _first_json_line(output: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in output.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return dict(json.loads(line))
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {process.returncode}:\n{output.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"the emulator did not start within {timeout_s:.0f} s:\n{output.read_text()}")


def bench_settings(emulator: EmulatorProcess, storage: str) -> Settings:
    return Settings.from_env(
        {
            "BACKUPWARDEN_ARM_ENDPOINT": emulator.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "bench",
            "BACKUPWARDEN_CA_BUNDLE": emulator.ca_bundle,
            "AzureWebJobsStorage": storage,
            "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": emulator.endpoint,
            "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": emulator.endpoint,
            "BACKUPWARDEN_DCR_IMMUTABLE_ID": DCR_ID,
            "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE_ID,
        }
    )


# --- memory ----------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux: clear_refs 5); False if it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """VmHWM (resettable) where /proc has it, else ru_maxrss (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the phases -------------------------------------------------------------------------------------
@dataclass
class FillResult:
    records: Counter[str] = field(default_factory=Counter)
    json_bytes: Counter[str] = field(default_factory=Counter)
    added: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def fill(outbox: Outbox, records: Iterator[tuple[str, dict[str, Any]]], workers: int) -> FillResult:
    """Queue every record with Outbox.add, FILL_CHUNK rows of one stream per call.

    At most 2 × workers chunks are in flight, so the rows never pile up in memory.
    """
    result = FillResult()
    buffers: dict[str, list[dict[str, Any]]] = {}
    in_flight: deque[Future[int]] = deque()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for stream, row in records:
            result.records[stream] += 1
            result.json_bytes[stream] += row_size(row_json(row))  # as the SDK counts it
            buffer = buffers.setdefault(stream, [])
            buffer.append(row)
            if len(buffer) == FILL_CHUNK:
                in_flight.append(pool.submit(outbox.add, stream, buffer))
                buffers[stream] = []
                while len(in_flight) > 2 * workers:
                    result.added += in_flight.popleft().result()
        in_flight.extend(pool.submit(outbox.add, stream, rows) for stream, rows in buffers.items() if rows)
        result.added += sum(future.result() for future in in_flight)
    result.seconds = time.perf_counter() - started
    result.peak_rss_mb = peak_rss_mb()
    return result


class Stopwatch:
    """Seconds spent per step of the ship phase, added up across calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - started


class TimedOutbox(Outbox):
    """The real outbox; only the time spent reading pages and on bookkeeping is noted."""

    def __init__(self, table: TableClient, stopwatch: Stopwatch) -> None:
        super().__init__(table)
        self._stopwatch = stopwatch

    def pending(self, stream: str) -> Iterator[PendingRecord]:
        records = super().pending(stream)
        while True:
            with self._stopwatch.timing("reading the outbox"):
                record = next(records, None)
            if record is None:
                return
            yield record

    def mark_shipped(self, records: list[PendingRecord], *, keep_markers: bool) -> None:
        with self._stopwatch.timing("bookkeeping (markers, deletes)"):
            super().mark_shipped(records, keep_markers=keep_markers)


@dataclass
class TimedUploader:
    uploader: LogsUploader
    stopwatch: Stopwatch

    def upload(self, stream: str, rows: list[dict[str, object]]) -> None:
        with self.stopwatch.timing("uploads (SDK + emulator)"):
            self.uploader.upload(stream, rows)


@dataclass
class ShipPhase:
    results: list[ShipResult]
    seconds: float
    upload_statuses: Counter[str]
    peak_rss_mb: float
    peak_reset: bool
    steps: dict[str, float]

    @property
    def upload_calls(self) -> int:
        return sum(self.upload_statuses.values())


def ship(table: TableClient, uploader: LogsUploader, emulator: EmulatorProcess) -> ShipPhase:
    emulator.admin("DELETE", "requests")
    peak_reset = reset_peak_rss()
    stopwatch = Stopwatch()
    started = time.perf_counter()
    shipper = Shipper(TimedOutbox(table, stopwatch), TimedUploader(uploader, stopwatch))
    results = [shipper.ship(table.stream) for table in TABLES]
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    logged = emulator.admin("GET", "requests")["requests"]
    statuses = Counter(
        str(e["status"]) for e in logged if e["method"] == "POST" and e["route"] == INGESTION_ROUTE
    )
    steps = dict(stopwatch.seconds)
    steps["batching (JSON sizes, CPU)"] = seconds - sum(stopwatch.seconds.values())
    return ShipPhase(results, seconds, statuses, peak, peak_reset, steps)


# --- correctness -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Landed:
    table: str
    expected: int
    rows: int
    distinct_ids: int
    duplicated_ids: int
    left_pending: int
    parked: int

    @property
    def exactly_once(self) -> bool:
        return (
            self.rows == self.expected == self.distinct_ids
            and self.duplicated_ids == 0
            and self.left_pending == 0
            and self.parked == 0
        )


def landed(clients: AzureClients, outbox: Outbox, fill_result: FillResult) -> list[Landed]:
    """What the workspace holds, read back through LogsQueryClient, and what the outbox still holds."""
    query = LogsQuery(clients.logs_query(), WORKSPACE_ID)
    found = []
    for table in TABLES:
        (row,) = query.rows(
            f"{table.table} | summarize n = count() by {table.id_column}"
            " | summarize Rows = sum(n), Ids = count(), Duplicated = countif(n > 1)",
            timedelta(days=2),
        )
        found.append(
            Landed(
                table.table,
                fill_result.records[table.stream],
                int(row["Rows"] or 0),
                int(row["Ids"] or 0),
                int(row["Duplicated"] or 0),
                sum(1 for _ in outbox.pending(table.stream)),
                len(outbox.failed(table.stream)),
            )
        )
    return found


# --- the report ------------------------------------------------------------------------------------
def figures(fill_result: FillResult, shipped: ShipPhase) -> dict[str, Any]:
    records = sum(fill_result.records.values())
    total_bytes = sum(fill_result.json_bytes.values())
    min_calls = math.ceil(total_bytes / MAX_UPLOAD_BYTES)
    return {
        "records": records,
        "upload_calls": shipped.upload_calls,
        "min_calls": min_calls,
        "calls_ratio": round(shipped.upload_calls / min_calls, 3),
        "records_per_s": round(records / shipped.seconds, 1),
        "peak_rss_mb": round(max(fill_result.peak_rss_mb, shipped.peak_rss_mb), 1),
    }


def render(fill_result: FillResult, shipped: ShipPhase, checks: list[Landed], summary: dict[str, Any]) -> str:
    records = summary["records"]
    total_bytes = sum(fill_result.json_bytes.values())
    ratio, peak = summary["calls_ratio"], summary["peak_rss_mb"]
    ship_peak = f"{shipped.peak_rss_mb:.1f} MB" + ("" if shipped.peak_reset else " (whole run: cannot reset)")
    rows: list[tuple[str, str]] = [
        ("records", f"{records:,} ({_per_stream(fill_result.records)})"),
        ("JSON bytes (SDK count)", f"{total_bytes:,} = {total_bytes / MIB:.2f} MiB"),
        ("outbox fill", f"{fill_result.seconds:.1f} s, {records / fill_result.seconds:,.0f} records/s"),
        ("ship (both streams)", f"{shipped.seconds:.1f} s, {summary['records_per_s']:,.0f} records/s"),
        *((f"  {step}", f"{s:.1f} s ({s / shipped.seconds:.0%})") for step, s in shipped.steps.items()),
        ("upload calls (emulator log)", f"{shipped.upload_calls} ({_statuses(shipped.upload_statuses)})"),
        ("upload calls (shipper)", str(sum(r.upload_calls for r in shipped.results))),
        ("bytes sent (shipper count)", f"{sum(r.bytes_sent for r in shipped.results):,}"),
        ("min 1 MiB calls", str(summary["min_calls"])),
        ("calls ratio", f"{ratio:.3f} (target <= {TARGET_CALLS_RATIO}) {_ok(ratio <= TARGET_CALLS_RATIO)}"),
        ("peak RSS, outbox fill", f"{fill_result.peak_rss_mb:.1f} MB"),
        ("peak RSS, ship phase", ship_peak),
        (
            "peak RSS, process",
            f"{peak:.1f} MB (target <= {TARGET_PEAK_RSS_MB:.0f}) {_ok(peak <= TARGET_PEAK_RSS_MB)}",
        ),
    ]
    rows += [(f"landed in {check.table}", _landed_line(check)) for check in checks]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _landed_line(check: Landed) -> str:
    return (
        f"{check.rows:,} rows, {check.distinct_ids:,} distinct RecordIds of {check.expected:,}; "
        f"{check.duplicated_ids} duplicated, {check.left_pending} left pending, "
        f"{check.parked} parked {_ok(check.exactly_once)}"
    )


def _statuses(counts: Counter[str]) -> str:
    return ", ".join(f"HTTP {status}: {n}" for status, n in sorted(counts.items()))


def _per_stream(counts: Counter[str]) -> str:
    return ", ".join(f"{_short(k)}: {v:,}" for k, v in sorted(counts.items()))


def _short(stream: str) -> str:
    try:
        return table_for_stream(stream).table
    except StopIteration:
        return stream


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


# --- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outcomes", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--job-share", type=float, default=0.6, help="share of job outcome rows")
    parser.add_argument("--fill-workers", type=int, default=1, help="concurrent Outbox.add calls")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    with (
        tempfile.TemporaryDirectory(prefix="bench-outcomes-") as workdir,
        emulator_process(Path(workdir)) as emulator,
        Azurite() as azurite,
        AzureClients(bench_settings(emulator, azurite.connection_string)) as clients,
    ):
        outbox = Outbox(clients.outbox_table())
        outbox.ensure_table()
        now = datetime.fromisoformat(emulator.admin("GET", "clock")["now"])
        window = (now - timedelta(hours=23), now - timedelta(minutes=1))
        fill_result = fill(
            outbox, outcome_records(args.records, args.job_share, *window, args.seed), args.fill_workers
        )
        if fill_result.added != args.records:
            raise RuntimeError(f"the outbox took {fill_result.added} of {args.records} records")
        shipped = ship(clients.outbox_table(), LogsUploader(clients.logs_ingestion(), DCR_ID), emulator)
        checks = landed(clients, outbox, fill_result)

    summary = figures(fill_result, shipped)
    print(render(fill_result, shipped, checks, summary))
    print(json.dumps(summary))
    complete = all(r.complete for r in shipped.results) and all(c.exactly_once for c in checks)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
