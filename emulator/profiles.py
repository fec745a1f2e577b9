"""Realism profiles: named sets of realism knobs that switch on together.

A profile is a scenario fragment (`realism`, `recoveryservices`, `resource_graph`, `monitor`
sections). In a scenario, `realism.profile: unkind` lays the profile under the document: every
key the scenario sets itself wins, section by section, except `realism.faults`: the scenario's
faults come first and the profile's follow (a scenario such as `demo` says `faults: []`). At run
time `apply_profile(emulator, "unkind")` switches it on without touching the estate; faults
already set stay and come first. docs/emulator.md section 7 lists each knob with the fact it
models and its source.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.core.app import Emulator

# Where ARM, Azure Backup and Logs Ingestion answer with storms, bursts or lost answers: the
# routes the app writes through, and every ARM read.
ARM = r"^/subscriptions/"
PROTECT = r"/protectionContainers/[^/]+/protectedItems/[^/]+$"
BACKUP = r"/protectedItems/[^/]+/backup$"
REFRESH = r"/backupFabrics/Azure/refreshContainers$"
UPLOAD = r"^/dataCollectionRules/[^/]+/streams/"

UNKIND: dict[str, Any] = {
    "realism": {
        "lowercase_headers": True,
        "faults": [
            # A 429 storm: three throttled answers in a row, each with Retry-After (azure-facts §4).
            {"path": ARM, "status": 429, "rate": 0.03, "burst": 3, "retry_after_s": 1},
            # A 5xx burst: the service's transient errors come in runs.
            {"path": ARM, "status": 503, "rate": 0.02, "burst": 2},
            {"path": UPLOAD, "method": "POST", "status": 503, "rate": 0.03, "burst": 2},
            # Writes Azure performed whose answer was lost (azure-facts §11).
            {"path": BACKUP, "method": "POST", "lose_answer": True, "rate": 0.2},
            {"path": PROTECT, "method": "PUT", "lose_answer": True, "rate": 0.2},
            {"path": REFRESH, "method": "POST", "lose_answer": True, "rate": 0.1},
            {"path": UPLOAD, "method": "POST", "lose_answer": True, "rate": 0.1},
        ],
    },
    "recoveryservices": {
        "signed_operation_urls": True,
        "unscaled_retry_after": True,
        "job_list_lag_s": 120,
    },
    "resource_graph": {"lag_s": 180},
    "monitor": {"ingestion_delay_s": 30, "ingestion_delay_max_s": 300},
}

PROFILES: dict[str, dict[str, Any]] = {"unkind": UNKIND}


def profile(name: str) -> dict[str, Any]:
    """A copy of the named profile's scenario fragment."""
    if name not in PROFILES:
        raise ValueError(f"unknown realism profile '{name}'; known: {sorted(PROFILES)}")
    return copy.deepcopy(PROFILES[name])


def with_profile(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario with its `realism.profile` laid under it; unchanged without one."""
    realism = scenario.get("realism")
    if not isinstance(realism, dict) or realism.get("profile") is None:
        return scenario
    fragment = profile(str(realism["profile"]))
    own_faults = realism.get("faults") or []
    if not isinstance(own_faults, list):
        return scenario  # the loader names the malformed section
    merged = dict(scenario)
    for section, defaults in fragment.items():
        own = scenario.get(section)
        if own is not None and not isinstance(own, dict):
            return scenario
        merged[section] = {**defaults, **(own or {})}
    merged["realism"]["faults"] = [*own_faults, *fragment["realism"].get("faults", [])]
    return merged


def apply_profile(emulator: Emulator, name: str) -> None:
    """Switch a profile on at run time: the estate, and knobs the profile does not set, stay."""
    from emulator.core.realism import Fault
    from emulator.scenario import configure_backend

    fragment = profile(name)
    realism = fragment.pop("realism")
    with emulator.lock:
        emulator.lowercase_headers = bool(realism.get("lowercase_headers", emulator.lowercase_headers))
        added = [Fault.from_dict(raw) for raw in realism.get("faults", [])]
        emulator.faults.set([*emulator.faults.list(), *added])
        for backend in emulator.backends():
            configure_backend(backend, fragment)
