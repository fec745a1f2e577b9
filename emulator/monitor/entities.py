"""Workspaces, their tables and the data collection rules that feed them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.monitor.columns import Column

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "rg-monitor"
TENANT_ID = Column("TenantId", "string")
TIME_GENERATED = Column("TimeGenerated", "datetime")
TYPE = Column("Type", "string")


@dataclass
class Table:
    name: str
    columns: list[Column]


@dataclass(eq=False)  # identity: one object per workspace
class Workspace:
    name: str
    customer_id: str  # the "Workspace ID" GUID the query API takes
    resource_id: str
    tables: dict[str, Table] = field(default_factory=dict)

    @property
    def catalog(self) -> str:
        return "ws_" + self.customer_id.replace("-", "")

    @property
    def subscription_id(self) -> str:
        return self._resource_id_part("subscriptions") or DEFAULT_SUBSCRIPTION

    @property
    def resource_group(self) -> str:
        return self._resource_id_part("resourcegroups") or DEFAULT_RESOURCE_GROUP

    def _resource_id_part(self, key: str) -> str | None:
        parts = self.resource_id.strip("/").split("/")
        for index, part in enumerate(parts[:-1]):
            if part.lower() == key:
                return parts[index + 1]
        return None


@dataclass(frozen=True)
class StreamDeclaration:
    name: str
    columns: tuple[Column, ...]
    output_table: str
    workspace: Workspace


@dataclass
class DataCollectionRule:
    name: str
    immutable_id: str
    resource_id: str
    streams: dict[str, StreamDeclaration]

    def stream(self, name: str) -> StreamDeclaration | None:
        for declared, stream in self.streams.items():
            if declared.lower() == name.lower():
                return stream
        return None


def table_layout(declared: Sequence[Column]) -> list[Column]:
    """A Log Analytics table: TenantId and TimeGenerated first, the declared columns, Type last."""
    names = {c.name for c in declared}
    for standard in (TENANT_ID, TIME_GENERATED, TYPE):
        match = next((c for c in declared if c.name == standard.name), None)
        if match is not None and match.type != standard.type:
            raise ValueError(f"column '{standard.name}' must be {standard.type}, not {match.type}")
    head = [c for c in (TENANT_ID, TIME_GENERATED) if c.name not in names]
    tail = [TYPE] if TYPE.name not in names else []
    return [*head, *declared, *tail]
