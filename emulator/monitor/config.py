"""A scenario's `monitor:` section turned into backend state.

monitor:
  ingestion_delay_s: 0            # rows queryable N emulated seconds after ingestion
  ingestion_delay_max_s: 0        # above ingestion_delay_s: each upload's delay drawn between the two
  strict_ingestion: true          # 400 where the real service silently drops data
  query_endpoint: null            # base URL of alert links (default: where clients reach us)
  webhook_url: https://...        # action group webhook for every rule without its own
  webhook_verify: true            # or the path of a CA bundle
  webhook_retry_delays_s: [10, 100, 100, 100, 100]
  webhook_timeout_s: 10
  workspaces:
    - {name: law-backupwarden, id: <guid>, resource_id: <arm id>}   # id/resource_id optional
  dcrs:
    - name: dcr-backupwarden
      immutable_id: dcr-<32 hex>  # optional
      streams:
        Custom-BackupJobOutcomes:
          columns: [{name: VmId, type: string}, {name: Attempt, type: int}]
          output_table: BackupJobOutcomes_CL
          workspace: law-backupwarden   # name, id or resource id; optional with one workspace
  alert_rules:
    - {name, workspace, query, frequency_s, window_s, threshold: {operator, value},
       dimensions: [..], severity, webhook_url, metric_column, time_aggregation, description}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.monitor.models import MonitorBackend

_SETTINGS = {
    "ingestion_delay_s",
    "ingestion_delay_max_s",
    "strict_ingestion",
    "query_endpoint",
    "webhook_url",
    "webhook_verify",
    "webhook_retry_delays_s",
    "webhook_timeout_s",
}
_SECTION_KEYS = _SETTINGS | {"workspaces", "dcrs", "alert_rules"}
_WORKSPACE_KEYS = {"name", "id", "resource_id", "subscription_id", "resource_group"}
_DCR_KEYS = {"name", "immutable_id", "resource_id", "streams"}
_STREAM_KEYS = {"columns", "output_table", "workspace"}


def apply_section(backend: MonitorBackend, section: Mapping[str, Any]) -> None:
    if not isinstance(section, Mapping):
        raise ValueError("monitor: must be a mapping")
    _check_keys(section, _SECTION_KEYS, "monitor")
    _apply_settings(backend, section)
    for index, raw in enumerate(_list(section, "workspaces")):
        _at(f"monitor.workspaces[{index}]", partial(_add_workspace, backend, raw))
    for index, raw in enumerate(_list(section, "dcrs")):
        _at(f"monitor.dcrs[{index}]", partial(_add_dcr, backend, raw))
    for index, raw in enumerate(_list(section, "alert_rules")):
        _at(f"monitor.alert_rules[{index}]", partial(backend.alerts.add, raw))


def _apply_settings(backend: MonitorBackend, section: Mapping[str, Any]) -> None:
    settings = backend.settings
    if "ingestion_delay_s" in section:
        delay = section["ingestion_delay_s"]
        if not _is_number(delay) or delay < 0:
            raise ValueError(f"monitor.ingestion_delay_s must be a number >= 0, not {delay!r}")
        settings.ingestion_delay_s = float(delay)
    if "ingestion_delay_max_s" in section:
        delay = section["ingestion_delay_max_s"]
        if not _is_number(delay) or delay < 0:
            raise ValueError(f"monitor.ingestion_delay_max_s must be a number >= 0, not {delay!r}")
        settings.ingestion_delay_max_s = float(delay)
    if "strict_ingestion" in section:
        settings.strict_ingestion = _bool(section["strict_ingestion"], "monitor.strict_ingestion")
    if "query_endpoint" in section:
        settings.query_endpoint = section["query_endpoint"]
    delivery = settings.delivery
    if "webhook_url" in section:
        delivery = dataclasses.replace(delivery, webhook_url=section["webhook_url"])
    if "webhook_verify" in section:
        verify = section["webhook_verify"]
        if not isinstance(verify, bool | str):
            raise ValueError("monitor.webhook_verify must be true, false or the path of a CA bundle")
        delivery = dataclasses.replace(delivery, verify=verify)
    if "webhook_retry_delays_s" in section:
        delays = section["webhook_retry_delays_s"]
        if not isinstance(delays, list) or not all(_is_number(d) for d in delays):
            raise ValueError("monitor.webhook_retry_delays_s must be a list of seconds")
        delivery = dataclasses.replace(delivery, retry_delays_s=tuple(float(d) for d in delays))
    if "webhook_timeout_s" in section:
        delivery = dataclasses.replace(delivery, timeout_s=float(section["webhook_timeout_s"]))
    settings.delivery = delivery


def _add_workspace(backend: MonitorBackend, raw: Any) -> None:
    _check_keys(raw, _WORKSPACE_KEYS, "workspace")
    if not raw.get("name"):
        raise ValueError("'name' is required")
    extra = {k: str(raw[k]) for k in ("subscription_id", "resource_group") if raw.get(k)}
    backend.add_workspace(str(raw["name"]), raw.get("id"), raw.get("resource_id"), **extra)


def _add_dcr(backend: MonitorBackend, raw: Any) -> None:
    _check_keys(raw, _DCR_KEYS, "data collection rule")
    if not raw.get("name"):
        raise ValueError("'name' is required")
    streams = raw.get("streams")
    if not isinstance(streams, Mapping) or not streams:
        raise ValueError("'streams' must map stream names to {columns, output_table, workspace}")
    specs = {str(name): _stream(backend, str(name), spec) for name, spec in streams.items()}
    backend.add_dcr(str(raw["name"]), specs, raw.get("immutable_id"), raw.get("resource_id"))


def _stream(backend: MonitorBackend, name: str, spec: Any) -> dict[str, Any]:
    _check_keys(spec, _STREAM_KEYS, f"stream '{name}'")
    columns = spec.get("columns")
    well_formed = isinstance(columns, list) and all(
        isinstance(c, Mapping) and {"name", "type"} <= set(c) for c in columns
    )
    if not well_formed:
        raise ValueError(f"stream '{name}': 'columns' must be a list of {{name, type}}")
    if not spec.get("output_table"):
        raise ValueError(f"stream '{name}': 'output_table' is required")
    workspace = spec.get("workspace")
    if workspace is None:
        if len(backend.workspaces) != 1:
            raise ValueError(
                f"stream '{name}': 'workspace' is required unless there is exactly one workspace"
            )
        workspace = next(iter(backend.workspaces.values())).name
    return {"columns": columns, "output_table": spec["output_table"], "workspace": workspace}


def _at(where: str, action: Callable[[], Any]) -> None:
    try:
        action()
    except (ValueError, KeyError, TypeError) as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"{where}: {detail}") from exc


def _check_keys(raw: Any, allowed: set[str], what: str) -> None:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a mapping")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known: {sorted(allowed)}")


def _list(section: Mapping[str, Any], key: str) -> list[Any]:
    value = section.get(key) or []
    if not isinstance(value, list):
        raise ValueError(f"monitor.{key} must be a list")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, not {value!r}")
    return value
