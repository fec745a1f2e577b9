"""The Azure Monitor backend: workspaces, data collection rules, ingestion, KQL queries, alert rules.

State and rules only; `responses.py` parses requests and `alerts.py` evaluates log search alert
rules on the emulated clock. Every public method takes `emulator.lock` (re-entrant), so tests may
call them with or without holding it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.monitor.alerts import AlertEngine, AlertRule
from emulator.monitor.columns import Column, check_identifier, column_type
from emulator.monitor.entities import (
    DEFAULT_RESOURCE_GROUP,
    DEFAULT_SUBSCRIPTION,
    TENANT_ID,
    TIME_GENERATED,
    TYPE,
    DataCollectionRule,
    StreamDeclaration,
    Table,
    Workspace,
    table_layout,
)
from emulator.monitor.exceptions import (
    DataCollectionRuleNotFound,
    LogAnalyticsError,
    StreamNotFound,
    WorkspaceNotFound,
    invalid_request,
)
from emulator.monitor.ingestion import StreamShape, decode_upload, rows_for_stream
from emulator.monitor.kql_errors import query_error
from emulator.monitor.logstore import LogStore
from emulator.monitor.results import QueryResult
from emulator.monitor.timespans import Window, parse_window
from emulator.monitor.webhooks import AlertOutbox, DeliverySettings

if TYPE_CHECKING:
    from emulator.core.app import Emulator

_IDS = uuid.UUID("5d1c1a36-9f4e-4a44-9d7e-6b0f3c2a8e11")  # namespace for ids derived from names


@dataclass
class MonitorSettings:
    ingestion_delay_s: float = 0.0  # the real service shows rows 20 s to 3 min after ingestion
    # When above ingestion_delay_s: each upload's delay is drawn between the two (seeded).
    ingestion_delay_max_s: float = 0.0
    strict_ingestion: bool = True  # see ingestion.py
    query_endpoint: str | None = None  # base URL written into alert links; default: the caller's
    delivery: DeliverySettings = field(default_factory=DeliverySettings)


class MonitorBackend:
    scenario_section = "monitor"  # the scenario loader hands that section to `configure`

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.settings = MonitorSettings()
        self.store = LogStore()
        self.workspaces: dict[str, Workspace] = {}  # by customer id, lower-case
        self.dcrs: dict[str, DataCollectionRule] = {}  # by immutable id, lower-case
        self.deliveries = AlertOutbox(emulator.clock, alive=self._is_live)
        self.alerts = AlertEngine(self)
        self.seen_endpoint = "https://api.loganalytics.io"
        self._delays = random.Random(13)

    # --- configuration ---------------------------------------------------------------
    def configure(self, section: Mapping[str, Any]) -> None:
        """Apply a scenario's `monitor:` section; ValueError names the offending entry."""
        from emulator.monitor.config import apply_section

        with self.emulator.lock:
            apply_section(self, section)

    def add_workspace(
        self,
        name: str,
        customer_id: str | None = None,
        resource_id: str | None = None,
        subscription_id: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
    ) -> Workspace:
        with self.emulator.lock:
            workspace_id = (
                str(uuid.UUID(customer_id)) if customer_id else str(uuid.uuid5(_IDS, f"workspace:{name}"))
            )
            if workspace_id in self.workspaces:
                raise ValueError(
                    f"workspace id {workspace_id} is already used by '{self.workspaces[workspace_id].name}'"
                )
            if any(w.name.lower() == name.lower() for w in self.workspaces.values()):
                raise ValueError(f"workspace name '{name}' is already used")
            resource_id = resource_id or (
                f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
                f"/providers/Microsoft.OperationalInsights/workspaces/{name}"
            )
            workspace = Workspace(name, workspace_id, resource_id)
            self.store.add_catalog(workspace.catalog)
            self.workspaces[workspace_id] = workspace
            return workspace

    def workspace(self, reference: str) -> Workspace:
        """A workspace by customer id, name or ARM resource id (case-insensitive)."""
        wanted = reference.strip().lower()
        for workspace in self.workspaces.values():
            if wanted in (workspace.customer_id, workspace.name.lower(), workspace.resource_id.lower()):
                return workspace
        raise KeyError(
            f"no workspace '{reference}'; known: {', '.join(w.name for w in self.workspaces.values())}"
        )

    def add_dcr(
        self,
        name: str,
        streams: Mapping[str, Mapping[str, Any]],
        immutable_id: str | None = None,
        resource_id: str | None = None,
    ) -> DataCollectionRule:
        """`streams`: {"Custom-X": {"columns": [{name, type}], "output_table": "X_CL", "workspace": ref}}."""
        with self.emulator.lock:
            rule_id = immutable_id or "dcr-" + uuid.uuid5(_IDS, f"dcr:{name}").hex
            if rule_id.lower() in self.dcrs:
                raise ValueError(f"data collection rule immutable id '{rule_id}' is already used")
            declared = {stream: self._declare_stream(stream, spec) for stream, spec in streams.items()}
            resource_id = resource_id or (
                f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
                f"/providers/Microsoft.Insights/dataCollectionRules/{name}"
            )
            rule = DataCollectionRule(name, rule_id, resource_id, declared)
            self.dcrs[rule_id.lower()] = rule
            return rule

    def add_alert_rule(self, spec: Mapping[str, Any]) -> AlertRule:
        with self.emulator.lock:
            return self.alerts.add(spec)

    def note_endpoint(self, base_url: str) -> None:
        """Alert links point where clients reach this emulator, unless `query_endpoint` says otherwise."""
        self.seen_endpoint = base_url

    @property
    def query_endpoint(self) -> str:
        return (self.settings.query_endpoint or self.seen_endpoint).rstrip("/")

    # --- Logs Ingestion API ------------------------------------------------------------
    def ingest(self, rule_id: str, stream_name: str, raw: bytes, content_encoding: str | None) -> int:
        """Store one upload; returns the number of rows stored."""
        with self.emulator.lock:
            body = decode_upload(raw, content_encoding)
            rule = self.dcrs.get(rule_id.lower())
            if rule is None:
                raise DataCollectionRuleNotFound(rule_id)
            stream = rule.stream(stream_name)
            if stream is None:
                raise StreamNotFound(stream_name, rule_id, list(rule.streams))
            shape = StreamShape(stream.name, rule.immutable_id, {c.name: c for c in stream.columns})
            rows = rows_for_stream(body, shape, self.settings.strict_ingestion)
            self._store_rows(stream, rows)
            return len(rows)

    def _store_rows(self, stream: StreamDeclaration, rows: list[dict[str, Any]]) -> None:
        now = self.emulator.now()
        table = stream.workspace.tables[stream.output_table]
        for row in rows:
            if row.get(TIME_GENERATED.name) is None:
                row[TIME_GENERATED.name] = now.replace(tzinfo=None)
            row.setdefault(TENANT_ID.name, stream.workspace.customer_id)
            row.setdefault(TYPE.name, table.name)
        visible_at = now + timedelta(seconds=self._ingestion_delay_s())
        self.store.insert(stream.workspace.catalog, table.name, table.columns, rows, visible_at)

    def _ingestion_delay_s(self) -> float:
        low, high = self.settings.ingestion_delay_s, self.settings.ingestion_delay_max_s
        return self._delays.uniform(low, high) if high > low else low

    def rows(self, workspace: str, table: str) -> list[dict[str, Any]]:
        """Every row stored in a table, visible yet or not (a test's view of what landed)."""
        with self.emulator.lock:
            found = self.workspace(workspace)
            if table not in found.tables:
                raise KeyError(
                    f"workspace '{found.name}' has no table '{table}'; known: {', '.join(found.tables)}"
                )
            stored = self.store.read(found.catalog, table, found.tables[table].columns)
            return [{k: _plain(v) for k, v in row.items()} for row in stored]

    # --- Log Analytics query API ---------------------------------------------------------
    def query(
        self, workspace_id: str, text: Any, timespan: Any = None, additional: Iterable[Any] | None = None
    ) -> QueryResult:
        """One query request; raises the service's errors."""
        with self.emulator.lock:
            primary = self.workspaces.get(workspace_id.strip().lower())
            if primary is None:
                raise WorkspaceNotFound()
            if not isinstance(text, str) or not text.strip():
                raise invalid_request(
                    "QueryValidationError", "The 'query' property is required and must be a string."
                )
            now = self.emulator.now()
            return self.run_query(
                [primary, *self._additional(additional)], text, self._window(timespan, now), now
            )

    def run_query(
        self, workspaces: Sequence[Workspace], text: str, window: Window | None, now: datetime
    ) -> QueryResult:
        tables: dict[str, list[str]] = {}
        for workspace in dict.fromkeys(workspaces):
            for table in workspace.tables:
                tables.setdefault(table, []).append(workspace.catalog)
        try:
            return self.store.query(tables, text, now, window)
        except LogAnalyticsError:
            raise
        except Exception as exc:  # the engine's refusal becomes the service's 400
            raise query_error(exc, text) from exc

    def _additional(self, references: Iterable[Any] | None) -> list[Workspace]:
        found = []
        for reference in references or []:
            try:
                found.append(self.workspace(str(reference)))
            except KeyError:
                raise invalid_request(
                    "WorkspaceNotFoundError", f"Failed to resolve workspace '{reference}' of 'workspaces'."
                ) from None
        return found

    @staticmethod
    def _window(timespan: Any, now: datetime) -> Window | None:
        if timespan in (None, ""):
            return None
        try:
            return parse_window(str(timespan), now)
        except ValueError as exc:
            raise invalid_request("InvalidTimespanFormat", f"Invalid timespan '{timespan}': {exc}.") from exc

    # --- alerts ------------------------------------------------------------------------
    def outbox(self) -> list[dict[str, Any]]:
        """Every alert notification so far (common alert schema), oldest first."""
        return self.deliveries.payloads()

    def outbox_entries(self) -> list[dict[str, Any]]:
        """The notifications with their webhook delivery: state and attempts."""
        return self.deliveries.entries()

    def evaluate_alerts(self) -> list[dict[str, Any]]:
        """Evaluate every rule at the emulated now; returns the payloads that produced."""
        with self.emulator.lock:
            return self.alerts.evaluate_all(self.emulator.now())

    def wait_for_deliveries(self, timeout_s: float = 5.0) -> bool:
        return self.deliveries.wait_until_idle(timeout_s)

    def _is_live(self) -> bool:
        try:
            return self.emulator.backend(MonitorBackend) is self
        except KeyError:
            return False

    # --- tables ---------------------------------------------------------------------------
    def _declare_stream(self, name: str, spec: Mapping[str, Any]) -> StreamDeclaration:
        # ARM wants custom streams named "Custom-…"; the DCR API is not emulated and the
        # 2021-11-01-preview example uploads to a stream named "test-rg", so any name is taken.
        columns = tuple(
            Column(check_identifier(str(c["name"]), "column"), column_type(str(c["type"])))
            for c in spec["columns"]
        )
        if len({c.name for c in columns}) != len(columns):
            raise ValueError(f"stream '{name}': column names repeat")
        workspace = self.workspace(str(spec["workspace"]))
        table = check_identifier(str(spec["output_table"]), "output table")
        self._ensure_table(workspace, table, columns)
        return StreamDeclaration(name, columns, table, workspace)

    def _ensure_table(self, workspace: Workspace, name: str, declared: Sequence[Column]) -> None:
        wanted = table_layout(declared)
        existing = workspace.tables.get(name)
        if existing is None:
            self.store.create_table(workspace.catalog, name, wanted)
            workspace.tables[name] = Table(name, list(wanted))
            return
        known = {c.name: c for c in existing.columns}
        for column in wanted:
            if column.name not in known:
                self.store.add_column(workspace.catalog, name, column)
                existing.columns.append(column)
            elif known[column.name].type != column.type:
                raise ValueError(
                    f"table '{name}' already has column '{column.name}' as {known[column.name].type}, "
                    f"not {column.type}"
                )


def _plain(value: Any) -> Any:
    """Stored values as a test compares them: datetimes in UTC, GUIDs as text."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return str(value) if isinstance(value, uuid.UUID) else value
