"""Scenario keys for the kinds of VMs, policies and protected items the reconciler must tell apart.

`emulator.scenario` hands each VM, policy and protection mapping here; every function returns only
the settings the scenario names, so an entity without these keys keeps the estate's defaults.
Shapes and values: azure-mgmt-compute's SecurityTypes / StorageAccountTypes, the 2024-04-01
Recovery Services Backup spec (SimpleSchedulePolicy / SimpleSchedulePolicyV2, ProtectionState,
HealthStatus, AzureIaaSVMHealthDetails) and the azure-cli soft-delete recording.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from emulator.compute.shapes import DISK_TYPES, OS_DISK_TYPES, SECURITY_TYPES, VM_AGENT_STATUSES
from emulator.estate import ProtectedItem
from emulator.scenario import ScenarioError, _check_keys, _mapping, _parse_time, _sequence

POLICY_TYPES = {"V1", "V2"}  # Standard, Enhanced
FREQUENCIES = {"Daily", "Weekly", "Hourly"}
WEEKDAYS = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
# Enhanced policies back up every 4, 6, 8 or 12 hours within a window of 4 to 24 hours
# (Microsoft Learn, "Back up an Azure VM using Enhanced policy").
HOURLY_INTERVALS = {4, 6, 8, 12}
SCHEDULE_KEYS = {"frequency", "time", "days", "interval", "window_hours"}
HEALTH_STATUSES = {"Passed", "ActionRequired", "ActionSuggested"}
HEALTH_DETAIL_KEYS = {"code", "title", "message", "recommendations"}
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Policies' run times carry a date the service ignores; the estate's default policy uses this one.
_RUN_DATE = "2026-01-01"


def vm_kind(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """VirtualMachine fields from `security_type`, `os_disk_type`, `data_disk_types`, `vm_agent`."""
    kind: dict[str, Any] = {}
    if "security_type" in raw:
        kind["security_type"] = _one_of(raw["security_type"], SECURITY_TYPES, f"{where}.security_type")
    if "os_disk_type" in raw:
        kind["os_disk_type"] = _one_of(raw["os_disk_type"], OS_DISK_TYPES, f"{where}.os_disk_type")
    if "data_disk_types" in raw:
        disks = _sequence(raw["data_disk_types"], f"{where}.data_disk_types")
        kind["data_disk_types"] = [
            _one_of(disk, DISK_TYPES, f"{where}.data_disk_types[{index}]") for index, disk in enumerate(disks)
        ]
    if "vm_agent" in raw:
        kind["vm_agent_status"] = _one_of(raw["vm_agent"], VM_AGENT_STATUSES, f"{where}.vm_agent")
    return kind


def policy_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """BackupPolicy fields from `policy_type` and `schedule`."""
    settings: dict[str, Any] = {}
    policy_type = _one_of(raw.get("policy_type", "V1"), POLICY_TYPES, f"{where}.policy_type")
    if "policy_type" in raw:
        settings["policy_type"] = policy_type
    if "schedule" not in raw:
        return settings
    schedule_where = f"{where}.schedule"
    schedule = _mapping(raw["schedule"], schedule_where)
    _check_keys(schedule, SCHEDULE_KEYS, schedule_where)
    frequency = _one_of(schedule.get("frequency", "Daily"), FREQUENCIES, f"{schedule_where}.frequency")
    if frequency == "Hourly" and policy_type != "V2":
        raise ScenarioError(f"{schedule_where}.frequency: Hourly needs policy_type V2 (an Enhanced policy)")
    hourly_only = {"interval", "window_hours"} & set(schedule)
    if hourly_only and frequency != "Hourly":
        raise ScenarioError(f"{schedule_where}: {sorted(hourly_only)} apply to an Hourly schedule only")
    if ("days" in schedule) != (frequency == "Weekly"):
        raise ScenarioError(f"{schedule_where}.days: required for a Weekly schedule and only for it")
    default_time = "08:00" if frequency == "Hourly" else "22:00"
    settings["schedule_frequency"] = frequency
    settings["schedule_run_times"] = [_run_time(schedule.get("time", default_time), f"{schedule_where}.time")]
    if frequency == "Weekly":
        days = _sequence(schedule["days"], f"{schedule_where}.days")
        if not days:
            raise ScenarioError(f"{schedule_where}.days must name at least one day")
        settings["schedule_run_days"] = [
            _one_of(day, WEEKDAYS, f"{schedule_where}.days[{index}]") for index, day in enumerate(days)
        ]
    if frequency == "Hourly":
        interval = schedule.get("interval", 4)
        if interval not in HOURLY_INTERVALS or isinstance(interval, bool):
            raise ScenarioError(
                f"{schedule_where}.interval '{interval}' is not one of {sorted(HOURLY_INTERVALS)}"
            )
        window = schedule.get("window_hours", 12)
        if isinstance(window, bool) or not isinstance(window, int) or not 4 <= window <= 24:
            raise ScenarioError(
                f"{schedule_where}.window_hours must be an integer from 4 to 24, not {window!r}"
            )
        settings.update(hourly_interval=interval, hourly_window_hours=window)
    return settings


def apply_item_state(item: ProtectedItem, protection: dict[str, Any], start: datetime, where: str) -> None:
    """The item's `health_status`, `health_details` and `soft_deleted_at`."""
    if "health_status" in protection:
        item.health_status = _one_of(protection["health_status"], HEALTH_STATUSES, f"{where}.health_status")
    if "health_details" in protection:
        details = _sequence(protection["health_details"], f"{where}.health_details")
        item.health_details = [
            _health_detail(detail, f"{where}.health_details[{index}]") for index, detail in enumerate(details)
        ]
    if "soft_deleted_at" in protection:
        if item.protection_state != "ProtectionStopped":
            raise ScenarioError(
                f"{where}.soft_deleted_at: a soft-deleted item's state is ProtectionStopped, not "
                f"{item.protection_state}"
            )
        item.soft_deleted_at = _parse_time(protection["soft_deleted_at"], start, f"{where}.soft_deleted_at")


def _health_detail(raw: Any, where: str) -> dict[str, Any]:
    detail = _mapping(raw, where)
    _check_keys(detail, HEALTH_DETAIL_KEYS, where)
    code = detail.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ScenarioError(f"{where}.code must be an integer (the service's health code), not {code!r}")
    recommendations = _sequence(detail.get("recommendations"), f"{where}.recommendations")
    return {
        "code": code,
        "title": str(detail.get("title", "")),
        "message": str(detail.get("message", "")),
        "recommendations": [str(text) for text in recommendations],
    }


def _run_time(raw: Any, where: str) -> str:
    match = _CLOCK_TIME.match(str(raw))
    if match is None:
        raise ScenarioError(f"{where} must be a UTC time of day like '22:00', not {raw!r}")
    return f"{_RUN_DATE}T{match.group(1)}:{match.group(2)}:00Z"


def _one_of(raw: Any, allowed: set[str] | frozenset[str], where: str) -> str:
    if raw not in allowed:
        raise ScenarioError(f"{where} '{raw}' is not one of {sorted(allowed)}")
    return str(raw)
