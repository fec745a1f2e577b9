"""Scenario documents (YAML or JSON) turned into emulator state.

A scenario declares the clock, service timings, realism (latency, throttling, faults, a profile), the
estate (subscriptions → vaults with policies, VMs with their protection state) and the
sections other services read (`monitor`, `eventgrid`, `resource_graph`). `generate` expands
a large synthetic estate without listing every VM. See docs/emulator.md for the format.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from emulator.core.clock import DEFAULT_START
from emulator.core.errors import ServiceError
from emulator.core.realism import Fault, Latency
from emulator.core.throttle import DEFAULT_BUCKETS, BucketSpec
from emulator.estate import (
    BackupJob,
    BackupPolicy,
    FailurePlan,
    ProtectedItem,
    Subscription,
    Timings,
    Vault,
    VirtualMachine,
)
from emulator.profiles import with_profile

if TYPE_CHECKING:
    from emulator.core.app import Emulator

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PROTECTION_STATES = {"IRPending", "Protected", "ProtectionError", "ProtectionStopped", "BackupsSuspended"}
OS_TYPES = {"Linux", "Windows"}
# Every key a section may hold: a misspelt key fails the load instead of being ignored.
TOP_LEVEL_KEYS = {"name", "description", "clock", "timings", "realism", "subscriptions", "generate"}
SUBSCRIPTION_KEYS = {"id", "name", "tenant_id", "vaults", "vms"}
VAULT_KEYS = {"name", "location", "resource_group", "tags", "max_items", "policies"}
POLICY_KEYS = {"name", "policy_type", "schedule"}
VM_KEYS = {
    "name",
    "location",
    "resource_group",
    "tags",
    "provisioning_state",
    "created",
    "size",
    "os_type",
    "fail_next",
    "protection",
    "security_type",
    "os_disk_type",
    "data_disk_types",
    "vm_agent",
    "deleted",
}
PROTECTION_KEYS = {
    "vault",
    "policy",
    "state",
    "since",
    "last_backup",
    "last_backup_failed",
    "running_backup",
    "last_recovery_point",
    "health_status",
    "health_details",
    "soft_deleted_at",
}
JOB_OUTCOMES = {"Completed", "CompletedWithWarnings"}


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the offending field."""


def load_scenario_file(name_or_path: str) -> dict[str, Any]:
    """A shipped scenario by name (`demo`) or a YAML/JSON file path."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = [SCENARIO_DIR / f"{name_or_path}.yaml", SCENARIO_DIR / f"{name_or_path}.json"]
        found = next((p for p in shipped if p.is_file()), None)
        if found is None:
            names = sorted(p.stem for p in SCENARIO_DIR.glob("*.y*ml"))
            raise ScenarioError(f"scenario '{name_or_path}' is neither a file nor one of {names}")
        path = found
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"scenario file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(document, dict):
        raise ScenarioError(f"scenario file {path} must hold a mapping at the top level")
    return document


def apply_scenario(emulator: Emulator, scenario: dict[str, Any]) -> None:
    """Load `scenario` into a freshly reset emulator (caller holds the lock)."""
    if not isinstance(scenario, dict):
        raise ScenarioError("scenario must be a mapping")
    try:
        scenario = with_profile(scenario)
    except ValueError as exc:
        raise ScenarioError(f"realism.profile: {exc}") from exc
    sections = {getattr(backend, "scenario_section", None) for backend in emulator.backends()}
    _check_keys(scenario, TOP_LEVEL_KEYS | {str(s) for s in sections if s}, "scenario")
    clock = _mapping(scenario.get("clock"), "clock")
    _check_keys(clock, {"start", "scale"}, "clock")
    start = _parse_time(clock.get("start"), DEFAULT_START, "clock.start")
    # Without `clock.scale` the emulator keeps its scale (the server's --time-scale).
    emulator.clock.set(start, _number(clock["scale"], "clock.scale", minimum=0) if "scale" in clock else None)
    emulator.estate.timings = _timings(_mapping(scenario.get("timings"), "timings"))
    _apply_realism(emulator, _mapping(scenario.get("realism"), "realism"))
    for index, sub in enumerate(_sequence(scenario.get("subscriptions"), "subscriptions")):
        _load_subscription(emulator, sub, start, f"subscriptions[{index}]")
    if scenario.get("generate"):
        _load_generated(emulator, _mapping(scenario["generate"], "generate"), start)
    for backend in emulator.backends():
        configure_backend(backend, scenario)
    for backend in emulator.backends():
        loaded = getattr(backend, "scenario_loaded", None)
        if loaded is not None:
            loaded()


def configure_backend(backend: Any, scenario: dict[str, Any]) -> None:
    """Hand a service its own section (`recoveryservices`, `monitor`, `eventgrid`, `resource_graph`)."""
    configure = getattr(backend, "configure", None)
    section_name = getattr(backend, "scenario_section", None)
    if configure is None or not section_name or scenario.get(section_name) is None:
        return
    try:
        configure(scenario[section_name])
    except ScenarioError:
        raise
    except (ValueError, TypeError, KeyError, ServiceError) as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        prefixed = message if message.startswith(section_name) else f"{section_name}: {message}"
        raise ScenarioError(prefixed) from exc


def _parse_time(raw: Any, origin: datetime, where: str) -> datetime:
    """ISO-8601 time, or `-3h`/`-90m`/`-2d` relative to the scenario's clock start."""
    if raw is None:
        return origin
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    text = str(raw).strip()
    relative = _RELATIVE.match(text)
    if relative:
        return origin - timedelta(seconds=float(relative.group(1)) * _UNIT_S[relative.group(2)])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ScenarioError(f"{where}: '{text}' is neither ISO-8601 nor a relative time like -3h") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _timings(raw: dict[str, Any]) -> Timings:
    _check_keys(raw, {f.name for f in fields(Timings)}, "timings")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "job_outcome":
            if value not in JOB_OUTCOMES:
                raise ScenarioError(f"timings.job_outcome '{value}' is not one of {sorted(JOB_OUTCOMES)}")
            values[name] = value
        else:
            values[name] = _number(value, f"timings.{name}", minimum=0)
    if "retry_after_s" in values:
        values["retry_after_s"] = int(values["retry_after_s"])
    return Timings(**values)


def _number(raw: Any, where: str, minimum: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ScenarioError(f"{where} must be a number, not {raw!r}")
    if minimum is not None and raw < minimum:
        raise ScenarioError(f"{where} must be >= {minimum:g}, not {raw!r}")
    return float(raw)


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    """An optional section: absent or empty is {}, anything but a mapping is an error."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a mapping")
    return raw


def _check_keys(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")


def _sequence(raw: Any, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError(f"{where} must be a list")
    return raw


def _apply_realism(emulator: Emulator, raw: dict[str, Any]) -> None:
    _check_keys(raw, {"profile", "throttle", "latency", "faults", "lowercase_headers"}, "realism")
    lowercase = raw.get("lowercase_headers", False)
    if not isinstance(lowercase, bool):
        raise ScenarioError("realism.lowercase_headers must be true or false")
    emulator.lowercase_headers = lowercase
    throttle = _mapping(raw.get("throttle"), "realism.throttle")
    _check_keys(throttle, {"enabled", "read", "write"}, "realism.throttle")
    emulator.throttle.enabled = bool(throttle.get("enabled", True))
    # Emulator.reset() keeps bucket sizes set at run time; a scenario starts from ARM's unless it says.
    for kind in ("read", "write"):
        emulator.throttle.specs[kind] = DEFAULT_BUCKETS[kind]
        if kind in throttle:
            spec = _mapping(throttle[kind], f"realism.throttle.{kind}")
            emulator.throttle.specs[kind] = BucketSpec(
                _number(spec.get("capacity"), f"realism.throttle.{kind}.capacity", minimum=0),
                _number(spec.get("refill_per_s"), f"realism.throttle.{kind}.refill_per_s", minimum=0),
            )
    latency = _mapping(raw.get("latency"), "realism.latency")
    try:
        emulator.latency = Latency.from_dict(latency)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ScenarioError(f"realism.latency: {exc}") from exc
    faults = _sequence(raw.get("faults"), "realism.faults")
    for index, fault in enumerate(faults):
        _mapping(fault, f"realism.faults[{index}]")
    try:
        emulator.faults.set([Fault.from_dict(f) for f in faults])
    except (KeyError, ValueError, TypeError) as exc:
        raise ScenarioError(f"realism.faults: {exc}") from exc


def _require(raw: Any, key: str, where: str) -> Any:
    if not isinstance(raw, dict) or raw.get(key) in (None, ""):
        raise ScenarioError(f"{where}.{key} is required")
    return raw[key]


def _int(raw: Any, where: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ScenarioError(f"{where} must be an integer >= {minimum}, not {raw!r}")
    return raw


def _tags(raw: Any, where: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(raw, where).items()}


def _load_subscription(emulator: Emulator, raw: Any, start: datetime, where: str) -> None:
    estate = emulator.estate
    subscription_id = str(_require(raw, "id", where)).lower()
    _check_keys(raw, SUBSCRIPTION_KEYS, where)
    if subscription_id in estate.subscriptions:
        raise ScenarioError(f"{where}.id '{subscription_id}' is declared twice")
    sub = estate.add_subscription(
        Subscription(
            subscription_id=subscription_id,
            display_name=str(raw.get("name", raw["id"])),
            tenant_id=str(raw.get("tenant_id", Subscription.tenant_id)),
        )
    )
    vaults: dict[str, Vault] = {}
    for index, raw_vault in enumerate(_sequence(raw.get("vaults"), f"{where}.vaults")):
        vault = _load_vault(emulator, sub, raw_vault, f"{where}.vaults[{index}]")
        vaults[vault.name.lower()] = vault
    for index, raw_vm in enumerate(_sequence(raw.get("vms"), f"{where}.vms")):
        _load_vm(emulator, sub, vaults, raw_vm, start, f"{where}.vms[{index}]")


def _load_vault(emulator: Emulator, sub: Subscription, raw: Any, where: str) -> Vault:
    from emulator.scenario_kinds import policy_settings

    estate = emulator.estate
    name = str(_require(raw, "name", where))
    _check_keys(raw, VAULT_KEYS, where)
    vault = Vault(
        subscription_id=sub.subscription_id,
        resource_group=str(raw.get("resource_group", "rg-backup")),
        name=name,
        location=str(_require(raw, "location", where)),
        tags=_tags(raw.get("tags"), f"{where}.tags"),
        max_items=_int(raw.get("max_items", 1000), f"{where}.max_items", minimum=1),
    )
    if vault.id.lower() in estate.vaults:
        raise ScenarioError(f"{where}.name: vault '{vault.name}' is declared twice")
    estate.add_vault(vault)
    policies = _sequence(raw.get("policies"), f"{where}.policies") or [{"name": "DefaultPolicy"}]
    for index, raw_policy in enumerate(policies):
        name = str(_require(raw_policy, "name", f"{where}.policies[{index}]"))
        _check_keys(raw_policy, POLICY_KEYS, f"{where}.policies[{index}]")
        settings = policy_settings(raw_policy, f"{where}.policies[{index}]")
        estate.add_policy(BackupPolicy(vault_id=vault.id, name=name, **settings))
    return vault


def _load_vm(
    emulator: Emulator,
    sub: Subscription,
    vaults: dict[str, Vault],
    raw: Any,
    start: datetime,
    where: str,
) -> None:
    from emulator.scenario_kinds import vm_kind

    estate = emulator.estate
    name = str(_require(raw, "name", where))
    _check_keys(raw, VM_KEYS, where)
    vm = VirtualMachine(
        subscription_id=sub.subscription_id,
        resource_group=str(raw.get("resource_group", "rg-app")),
        name=name,
        location=str(_require(raw, "location", where)),
        tags=_tags(raw.get("tags"), f"{where}.tags"),
        provisioning_state=str(raw.get("provisioning_state", "Succeeded")),
        created=_parse_time(raw.get("created", "-30d"), start, f"{where}.created"),
        size=str(raw.get("size", VirtualMachine.size)),
        os_type=str(raw.get("os_type", VirtualMachine.os_type)),
        **vm_kind(raw, where),
    )
    if vm.os_type not in OS_TYPES:
        raise ScenarioError(f"{where}.os_type '{vm.os_type}' is not one of {sorted(OS_TYPES)}")
    if vm.id.lower() in estate.vms:
        raise ScenarioError(f"{where}.name: VM '{vm.name}' in {vm.resource_group} is declared twice")
    estate.add_vm(vm)
    if raw.get("fail_next"):
        plan = raw["fail_next"]
        code = str(_require(plan, "code", f"{where}.fail_next"))
        _check_keys(plan, {"code", "attempts"}, f"{where}.fail_next")
        estate.failure_plans[vm.id.lower()] = FailurePlan(
            error_code=code,
            attempts=_int(plan.get("attempts", 1), f"{where}.fail_next.attempts", minimum=1),
        )
    protection = raw.get("protection")
    if protection:
        _load_protection(emulator, sub, vaults, vm, protection, start, f"{where}.protection")
    if raw.get("deleted"):
        if not protection:
            raise ScenarioError(
                f"{where}.deleted: only a protected VM can be deleted (its item stays, orphaned)"
            )
        from emulator.compute.models import ComputeBackend

        emulator.backend(ComputeBackend).delete_vm(vm.id, emit_events=False)


def _load_protection(
    emulator: Emulator,
    sub: Subscription,
    vaults: dict[str, Vault],
    vm: VirtualMachine,
    protection: Any,
    start: datetime,
    where: str,
) -> None:
    vault = vaults.get(str(_require(protection, "vault", where)).lower())
    _check_keys(protection, PROTECTION_KEYS, where)
    if vault is None:
        raise ScenarioError(
            f"{where}.vault '{protection['vault']}' is not a vault of subscription {sub.subscription_id}"
        )
    if vault.location.lower() != vm.location.lower():
        raise ScenarioError(f"{where}.vault: {vault.name} is in {vault.location}, the VM in {vm.location}")
    policy_name = str(protection.get("policy", "DefaultPolicy"))
    policy_id = f"{vault.id}/backupPolicies/{policy_name}"
    if policy_id.lower() not in emulator.estate.policies:
        raise ScenarioError(f"{where}.policy '{policy_name}' is not a policy of vault {vault.name}")
    state = str(protection.get("state", "IRPending"))
    if state not in PROTECTION_STATES:
        raise ScenarioError(f"{where}.state '{state}' is not one of {sorted(PROTECTION_STATES)}")
    # A protected VM's first backup came after its protection was configured.
    default_since = "-7d" if state == "Protected" else "-2h"
    configured = _parse_time(protection.get("since", default_since), start, f"{where}.since")
    _protect(emulator, vm, vault, policy_id, state, configured, protection, start, where)


def _protect(
    emulator: Emulator,
    vm: VirtualMachine,
    vault: Vault,
    policy_id: str,
    state: str,
    configured: datetime,
    protection: dict[str, Any],
    start: datetime,
    where: str,
) -> None:
    from emulator.scenario_kinds import apply_item_state

    estate = emulator.estate
    item = ProtectedItem(
        vault_id=vault.id, vm=vm, policy_id=policy_id, protection_state=state, configured_at=configured
    )
    estate.protected_items[vm.id.lower()] = item
    estate.discovered.setdefault(vault.id.lower(), set()).add(vm.id.lower())
    estate.add_job(
        BackupJob(
            vault_id=vault.id,
            vm=vm,
            operation="ConfigureBackup",
            start_time=configured - timedelta(seconds=estate.timings.configure_operation_s),
            status="Completed",
            end_time=configured,
        )
    )
    if state == "Protected":
        _record_completed_backup(emulator, item, protection, start, where)
    elif "last_recovery_point" in protection:
        if state == "IRPending":
            raise ScenarioError(f"{where}.last_recovery_point: an IRPending item has no recovery point yet")
        _record_completed_backup(emulator, item, protection, start, where, key="last_recovery_point")
    apply_item_state(item, protection, start, where)
    if protection.get("last_backup_failed"):
        _record_failed_backup(emulator, item, protection["last_backup_failed"], start, where)
    if protection.get("running_backup"):
        _start_running_backup(emulator, item, start)


def _record_completed_backup(
    emulator: Emulator,
    item: ProtectedItem,
    protection: dict[str, Any],
    start: datetime,
    where: str,
    key: str = "last_backup",
) -> None:
    last = _parse_time(protection.get(key, "-20h"), start, f"{where}.{key}")
    if item.configured_at is not None and last < item.configured_at:
        raise ScenarioError(f"{where}.{key} {last.isoformat()} is before protection began (since)")
    emulator.estate.add_job(
        BackupJob(
            vault_id=item.vault_id,
            vm=item.vm,
            operation="Backup",
            start_time=last - timedelta(minutes=40),
            status="Completed",
            end_time=last,
        )
    )
    item.last_backup_status = "Completed"
    item.last_backup_time = last
    item.last_recovery_point = last


def _record_failed_backup(
    emulator: Emulator, item: ProtectedItem, failed: Any, start: datetime, where: str
) -> None:
    from emulator.recoveryservices.models import JOB_ERRORS

    failed_where = f"{where}.last_backup_failed"
    code = str(_require(failed, "code", failed_where))
    _check_keys(failed, {"code", "at", "message"}, failed_where)
    ended = _parse_time(failed.get("at", "-1h"), start, f"{failed_where}.at")
    message, recommendations = JOB_ERRORS.get(code, (f"Backup failed with {code}.", []))
    emulator.estate.add_job(
        BackupJob(
            vault_id=item.vault_id,
            vm=item.vm,
            operation="Backup",
            start_time=ended - timedelta(minutes=10),
            status="Failed",
            end_time=ended,
            error_code=code,
            error_message=str(failed.get("message", message)),
            recommendations=list(recommendations),
        )
    )
    item.last_backup_status = "Failed"


def _start_running_backup(emulator: Emulator, item: ProtectedItem, start: datetime) -> None:
    from emulator.recoveryservices.models import RecoveryServicesBackend

    backend = emulator.backend(RecoveryServicesBackend)
    backend.start_backup_job(item, started=start - timedelta(minutes=5))


def _load_generated(emulator: Emulator, raw: dict[str, Any], start: datetime) -> None:
    from emulator.generator import generate_estate

    try:
        generate_estate(emulator.estate, start=start, **raw)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"generate: {exc}") from exc
