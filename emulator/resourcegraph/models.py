"""Resource Graph's rules: scope, quota, staleness, paging; the KQL runs for real on DuckDB.

Scope: the request's `subscriptions`; else its `managementGroups` (the tenant root group is
named by the tenant id, others come from the scenario's `management_groups`); else, as the
spec's "Basic tenant query" example shows, every subscription of the estate.
Staleness: with `lag_s` > 0 a query reads the estate as it was `lag_s` emulated seconds ago.
Quota: `quota_per_5s` queries per user (bearer token) per 5-second window; `quota_enforced` off
(or the emulator's throttling switched off) keeps the headers but never answers 429.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
from duckdb_kql import KqlError, KqlSchemaError, KqlSyntaxError, KqlUnsupportedError

from emulator.core.errors import ServiceError
from emulator.resourcegraph.exceptions import (
    InvalidQuery,
    InvalidQueryRequest,
    ManagementGroupNotReadable,
    RateLimited,
    parser_failure,
    semantic_error,
    unknown_name,
    unsupported_by_emulator,
)
from emulator.resourcegraph.facets import FacetFailure, FacetRunner, facet_result
from emulator.resourcegraph.kql import KqlRunner, ResultPage, warm_up
from emulator.resourcegraph.paging import page_request, query_key, skip_token
from emulator.resourcegraph.quota import QuotaDecision, UserQuota, timespan
from emulator.resourcegraph.results import object_array, table
from emulator.resourcegraph.store import GraphStore

if TYPE_CHECKING:
    from emulator.core.app import Emulator

RESULT_FORMATS = {"objectarray": "objectArray", "table": "table"}
SETTINGS = {"lag_s", "quota_per_5s", "quota_enforced", "management_groups"}
_UNKNOWN_COLUMN = re.compile(r'column "([^"]+)" not found', re.IGNORECASE)
_UNKNOWN_TABLE = re.compile(r"Table with name (\S+) does not exist", re.IGNORECASE)


@dataclass(frozen=True)
class GraphQuery:
    """A QueryRequest body."""

    query: str
    subscriptions: list[str] | None = None
    management_groups: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    facets: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class GraphAnswer:
    body: dict[str, Any]
    headers: dict[str, str]


class ResourceGraphBackend:
    scenario_section = "resource_graph"

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.lag_s: float = 0.0
        self.quota_per_5s: int = 15
        self.quota_enforced: bool = True
        self.management_groups: dict[str, list[str]] = {}  # lower-case name -> subscription ids
        self._store = GraphStore()
        self._queries = KqlRunner(self._store, "resourcegraph_result")
        self._facets = KqlRunner(self._store, "resourcegraph_facet")
        self._quota = UserQuota()

    def configure(self, section: dict[str, Any]) -> None:
        """Apply a scenario's `resource_graph:` section."""
        if not isinstance(section, dict):
            raise ValueError("resource_graph must be a mapping")
        unknown = sorted(set(section) - SETTINGS)
        if unknown:
            raise ValueError(f"resource_graph: unknown setting(s) {unknown}; known: {sorted(SETTINGS)}")
        if "lag_s" in section:
            self.lag_s = _number(section["lag_s"], "resource_graph.lag_s")
        if "quota_per_5s" in section:
            self.quota_per_5s = int(
                _number(section["quota_per_5s"], "resource_graph.quota_per_5s", minimum=1)
            )
        if "quota_enforced" in section:
            if not isinstance(section["quota_enforced"], bool):
                raise ValueError("resource_graph.quota_enforced must be true or false")
            self.quota_enforced = section["quota_enforced"]
        if "management_groups" in section:
            self.management_groups = _management_groups(section["management_groups"])

    def scenario_loaded(self) -> None:
        """Build the tables now, as the service has its index before anyone asks: the first query
        would otherwise pay for indexing the whole estate (seconds at 10,000 VMs)."""
        now = self.emulator.now()
        self._store.sync(self.emulator.estate, now, keep_since=now - timedelta(seconds=self.lag_s))
        warm_up(now)

    # --- the query route ------------------------------------------------------------------------
    def query(self, request: GraphQuery, user: str) -> GraphAnswer:
        now = self.emulator.now()
        enforced = self.quota_enforced and self.emulator.throttle.enabled
        decision = self._quota.take(user, now, self.quota_per_5s, enforced)
        headers = self._quota_headers(decision)
        if not decision.granted:
            wait_s = max(1, self.emulator.clock.real_seconds(decision.resets_after_s))
            raise RateLimited(now, {"Retry-After": str(wait_s), **headers})
        try:
            return GraphAnswer(self._answer(request, now), headers)
        except ServiceError as exc:
            exc.headers = {**headers, **exc.headers}
            raise

    def _quota_headers(self, decision: QuotaDecision) -> dict[str, str]:
        return {
            "x-ms-user-quota-remaining": str(decision.remaining),
            "x-ms-user-quota-resets-after": timespan(
                self.emulator.clock.real_seconds(decision.resets_after_s)
            ),
        }

    def _answer(self, request: GraphQuery, now: datetime) -> dict[str, Any]:
        scope = self._scope(request)
        key = query_key(request.query, scope)
        page = page_request(request.options, key)
        result_format = _result_format(request.options)
        as_of = now - timedelta(seconds=self.lag_s)
        self._store.sync(self.emulator.estate, now, keep_since=as_of)
        result = self._run(request.query, scope, as_of, now, page.offset, page.size)
        body: dict[str, Any] = {
            "totalRecords": result.total,
            "count": len(result.rows),
            "resultTruncated": "false",
        }
        more = page.offset + len(result.rows) < result.total
        if more and "id" in result.columns:
            body["$skipToken"] = skip_token(page.offset + len(result.rows), page.size, key)
        elif more:
            body["resultTruncated"] = "true"
        render = object_array if result_format == "objectArray" else table
        body["data"] = render(result.columns, result.types, result.rows)
        body["facets"] = [
            facet_result(facet, result.columns, request.query, self._facet_runner(scope, as_of, now))
            for facet in request.facets
        ]
        return body

    def _run(
        self, kql: str, scope: list[str] | None, as_of: datetime, now: datetime, offset: int, limit: int
    ) -> ResultPage:
        if kql.lstrip().startswith("."):  # a Kusto control command: ARG runs queries only
            raise InvalidQuery(now, [parser_failure(1, 0, "input '.'")])
        try:
            return self._queries.page(kql, scope, as_of, now, offset, limit)
        except (KqlError, duckdb.Error) as exc:
            raise InvalidQuery(now, _reasons(exc)) from exc

    def _facet_runner(self, scope: list[str] | None, as_of: datetime, now: datetime) -> FacetRunner:
        def run(kql: str, top: int) -> tuple[int, list[dict[str, Any]]]:
            try:
                result = self._facets.page(kql, scope, as_of, now, 0, top)
            except (KqlError, duckdb.Error) as exc:
                raise FacetFailure(_reasons(exc)[0]["message"]) from exc
            return result.total, object_array(result.columns, result.types, result.rows)

        return run

    def _scope(self, request: GraphQuery) -> list[str] | None:
        if request.subscriptions:
            return [s.lower() for s in request.subscriptions]
        if request.management_groups:
            return [sub for group in request.management_groups for sub in self._subscriptions_of(group)]
        return None

    def _subscriptions_of(self, group: str) -> list[str]:
        configured = self.management_groups.get(group.lower())
        if configured is not None:
            return configured
        in_tenant = [
            s.subscription_id.lower()
            for s in self.emulator.estate.subscriptions.values()
            if s.tenant_id.lower() == group.lower()
        ]
        if in_tenant:
            return in_tenant
        raise ManagementGroupNotReadable(group)


def _reasons(exc: Exception) -> list[dict[str, Any]]:
    """The `details` after `InvalidQuery` that say what is wrong with a query."""
    if isinstance(exc, KqlSyntaxError):
        return [parser_failure(d.span.line, d.span.column, d.message) for d in exc.diagnostics] or [
            parser_failure(1, 0, str(exc))
        ]
    if isinstance(exc, KqlUnsupportedError):
        return [unsupported_by_emulator(exc.construct)]
    if isinstance(exc, KqlSchemaError):
        return [unknown_name(exc.name) if "unknown table" in (exc.hint or "") else semantic_error(str(exc))]
    message = str(exc)
    for pattern in (_UNKNOWN_COLUMN, _UNKNOWN_TABLE):
        found = pattern.search(message)
        if found:
            return [unknown_name(found.group(1).strip('"'))]
    return [semantic_error(message.splitlines()[0] if message else type(exc).__name__)]


def _result_format(options: dict[str, Any]) -> str:
    raw = options.get("resultFormat", "objectArray")
    chosen = RESULT_FORMATS.get(str(raw).lower())
    if chosen is None:
        raise InvalidQueryRequest(
            f"The query option 'resultFormat' must be 'objectArray' or 'table'; got {raw!r}."
        )
    return chosen


def _number(value: Any, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}; got {value!r}")
    return float(value)


def _management_groups(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise ValueError(
            "resource_graph.management_groups must map a group name to a list of subscription ids"
        )
    return {str(name).lower(): [str(sub).lower() for sub in subs] for name, subs in raw.items()}
