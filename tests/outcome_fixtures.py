"""What the outcome-shipping tests share: the new-VM bench (emulator over HTTPS at FAST_SCALE, Azurite, own
ledger table and work queue) plus an own outbox table, the workspace and DCR that infra/app/monitoring.bicep
deploys, and the ways to read back what landed: LogsQueryClient (as an operator would), the emulator's
stored rows in insertion order, and its request log.

A test module defines its fixture on `open_outcome_bench` (or imports `outcome_bench`, noqa F401/F811).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.monitor.query import LogsQueryResult

from backupwarden import app as wiring
from backupwarden.adapters.azure.logs_ingestion import LogsUploader
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.app import build_action_recorder, build_outcome_shipping
from backupwarden.domain.log_schema import JOB_OUTCOMES
from backupwarden.domain.records import Outcome
from backupwarden.flows.outcomes.collector import WATERMARK
from backupwarden.flows.outcomes.shipper import Shipper
from backupwarden.flows.outcomes.shipping import ShippingReport
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_log_analytics
from emulator import Emulator, EmulatorServer
from emulator.core.realism import LoggedRequest
from emulator.estate import BackupJob
from emulator.monitor.models import MonitorBackend
from tests.new_vm_fixtures import NewVmBench, fast_demo_scenario

INGESTION_ROUTE = "/dataCollectionRules/{ruleId}/streams/{stream}"


@dataclass
class OutcomeBench(NewVmBench):
    outbox_table: str = field(default_factory=lambda: f"outbox{uuid.uuid4().hex[:12]}")

    def load(self, scenario: dict[str, Any]) -> None:
        super().load(scenario)
        provision_log_analytics(self.emulator)

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(
            **{
                "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": self.server.endpoint,
                "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": self.server.endpoint,
                "BACKUPWARDEN_DCR_IMMUTABLE_ID": DEMO_DCR_ID,
                "BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID": DEMO_WORKSPACE_ID,
                "BACKUPWARDEN_OUTBOX_TABLE": self.outbox_table,
                **overrides,
            }
        )

    # --- the app ---------------------------------------------------------------------------------
    def ship(self, now: Callable[[], datetime] | None = None, **overrides: str) -> ShippingReport:
        """One outcomes run as `ship_outcomes` builds it (own SDK clients), on the emulator's clock."""
        settings = self.settings(**overrides)
        return build_outcome_shipping(settings, self.clients(settings), now=now or self.emulator.now).run()

    def record(self, outcomes: list[Outcome], source: str = "Timer", dry_run: bool = False) -> int:
        settings = self.settings()
        recorder = build_action_recorder(settings, self.clients(settings), now=self.emulator.now)
        return recorder.record(outcomes, source=source, dry_run=dry_run)

    def outbox(self) -> Outbox:
        return Outbox(self.clients(self.settings()).outbox_table(), clock=self.emulator.now)

    def watermark(self) -> datetime | None:
        return self.outbox().watermark(WATERMARK)[0]

    # --- what landed -------------------------------------------------------------------------------
    def query(self, text: str) -> list[dict[str, Any]]:
        """Rows of a KQL query on the workspace, through azure-monitor-query."""
        client = self.clients(self.settings()).logs_query()
        result = client.query_workspace(DEMO_WORKSPACE_ID, text, timespan=None)
        assert isinstance(result, LogsQueryResult), result  # not a partial result
        table = result.tables[0]
        return [dict(zip(table.columns, row, strict=True)) for row in table.rows]

    def landed(self, table: str = JOB_OUTCOMES.table) -> list[dict[str, Any]]:
        """Every row stored in a workspace table, in insertion (upload) order."""
        return self.emulator.backend(MonitorBackend).rows(DEMO_WORKSPACE_ID, table)

    def uploads(self) -> list[LoggedRequest]:
        """Every Logs Ingestion request the emulator answered, in order."""
        return [e for e in self.requests() if e.method == "POST" and e.route == INGESTION_ROUTE]

    def jobs(self) -> dict[str, BackupJob]:
        """The estate's backup jobs by job id (a copy of the mapping, the entities themselves)."""
        with self.emulator.lock:
            return dict(self.emulator.estate.jobs)

    def close(self) -> None:
        with (
            TableServiceClient.from_connection_string(self.storage) as service,
            contextlib.suppress(ResourceNotFoundError),
        ):
            service.delete_table(self.outbox_table)
        super().close()


def open_outcome_bench(emulator: Emulator, server: EmulatorServer, storage: str) -> Iterator[OutcomeBench]:
    """The demo estate at FAST_SCALE, the workspace and the DCR provisioned; closed after the test."""
    bench = OutcomeBench(emulator, server, storage)
    bench.load(fast_demo_scenario())
    yield bench
    bench.close()


@pytest.fixture
def outcome_bench(
    emulator: Emulator, emulator_server: EmulatorServer, azurite: str
) -> Iterator[OutcomeBench]:
    yield from open_outcome_bench(emulator, emulator_server, azurite)


# --- changing how the app is assembled, through wiring's own names --------------------------------
def ship_in_batches_of(monkeypatch: pytest.MonkeyPatch, max_upload_bytes: int) -> None:
    """Make build_outcome_shipping cut uploads at `max_upload_bytes`, so a run makes several calls."""
    monkeypatch.setattr(wiring, "Shipper", functools.partial(Shipper, max_upload_bytes=max_upload_bytes))


class ProcessKilled(BaseException):
    """The host ended the process (timeout, scale-in, crash): no handler of the app runs after it."""


@dataclass
class KillSwitch:
    """An Uploader (our own Protocol) that dies right after its `kill_on`-th successful upload."""

    kill_on: int
    uploaded: list[list[str]] = field(default_factory=list)  # the record ids of each upload that succeeded

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        switch = self

        class DiesAfterUpload(LogsUploader):
            def upload(self, stream: str, rows: list[dict[str, Any]]) -> None:
                super().upload(stream, rows)
                switch.uploaded.append([str(row["RecordId"]) for row in rows])
                if len(switch.uploaded) == switch.kill_on:
                    raise ProcessKilled(f"killed after upload {switch.kill_on}, before its bookkeeping")

        monkeypatch.setattr(wiring, "LogsUploader", DiesAfterUpload)
