"""What the sweep's integration tests share: the app's settings pointing at the emulator (HTTPS) and Azurite.

The fixtures (`sweep_bench`, `demo_bench`) are registered in tests/conftest.py. Every test gets its own
ledger table, so runs of different tests never see each other's claims.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.app import build_sweep
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.run_report import RunReport
from backupwarden.flows.sweep.candidates import Sweep
from backupwarden.settings import Settings
from emulator import Emulator, EmulatorServer
from emulator.core.realism import LoggedRequest
from emulator.scenario import load_scenario_file

# POST …/protectionContainers/{c}/protectedItems/vm;iaasvmcontainerv2;{rg};{vm}/backup: "Backup now".
BACKUP_POST = re.compile(r"/protectedItems/[^/]*;(?P<vm>[^/;]+)/backup$", re.IGNORECASE)


def demo_scenario() -> dict[str, Any]:
    """A fresh copy of the shipped demo scenario (callers may edit it)."""
    return copy.deepcopy(load_scenario_file("demo"))


def vm_name(vm_id: str) -> str:
    return vm_id.rstrip("/").rsplit("/", 1)[-1]


def by_vm_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    """Per-VM outcomes keyed by VM name; fails on two outcomes for one VM."""
    named: dict[str, Outcome] = {}
    for outcome in outcomes:
        if not outcome.vm_id:
            continue
        name = vm_name(outcome.vm_id)
        assert name not in named, f"two outcomes for {name}: {named[name]} and {outcome}"
        named[name] = outcome
    return named


def names_with(outcomes: list[Outcome], result: Result) -> set[str]:
    return {vm_name(o.vm_id) for o in outcomes if o.result is result and o.vm_id}


# --- what a scenario says the sweep must do ------------------------------------------------------
GRACE_PERIOD = timedelta(hours=1)  # the default BACKUPWARDEN_GRACE_PERIOD
OPT_OUT_TAG = "backupwarden:skip"
REASON_OPTED_OUT = "opted out by tag backupwarden:skip"
REASON_JOB_RUNNING = "a backup job is already in progress"
REASON_GRACE = "within grace period"
_RELATIVE = re.compile(r"^-(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def scenario_vms(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    return [vm for sub in scenario["subscriptions"] for vm in sub.get("vms") or []]


def pending_for(vm: dict[str, Any]) -> timedelta:
    """How long before the clock start the VM's protection was configured (its relative `since`)."""
    since = str(vm["protection"].get("since", "-2h"))
    match = _RELATIVE.match(since)
    if match is None:
        raise ValueError(f"{vm['name']}: only relative `since` values are read here, not {since!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


def expected_outcomes(scenario: dict[str, Any]) -> dict[str, tuple[Result, str]]:
    """VM name -> (result, reason fragment) for every VM pending its initial backup; the others get none."""
    expected: dict[str, tuple[Result, str]] = {}
    for vm in scenario_vms(scenario):
        protection = vm.get("protection") or {}
        if not protection or protection.get("state", "IRPending") != "IRPending":
            continue
        if str((vm.get("tags") or {}).get(OPT_OUT_TAG, "false")).lower() == "true":
            expected[vm["name"]] = (Result.SKIPPED, REASON_OPTED_OUT)
        elif protection.get("running_backup"):
            expected[vm["name"]] = (Result.SKIPPED, REASON_JOB_RUNNING)
        elif pending_for(vm) < GRACE_PERIOD:
            expected[vm["name"]] = (Result.SKIPPED, REASON_GRACE)
        else:
            expected[vm["name"]] = (Result.TRIGGERED, "initial backup pending since")
    return expected


def triggered_names(scenario: dict[str, Any]) -> set[str]:
    return {name for name, (result, _) in expected_outcomes(scenario).items() if result is Result.TRIGGERED}


def failure_plans(scenario: dict[str, Any]) -> dict[str, str]:
    """VM name -> the error code its next backup job fails with."""
    return {vm["name"]: vm["fail_next"]["code"] for vm in scenario_vms(scenario) if vm.get("fail_next")}


def demo_at_wall_clock() -> dict[str, Any]:
    """The demo estate with its clock starting now: for entry points that read the wall clock."""
    scenario = demo_scenario()
    scenario["clock"]["start"] = datetime.now(UTC).isoformat()
    return scenario


@dataclass
class SweepBench:
    """The emulator, Azurite and one ledger table, with the app built from settings against them."""

    emulator: Emulator
    server: EmulatorServer
    storage: str
    ledger_table: str = field(default_factory=lambda: f"ledger{uuid.uuid4().hex[:12]}")
    _opened: list[AzureClients] = field(default_factory=list)

    def load(self, scenario: dict[str, Any]) -> None:
        """Load a scenario with the clock at real speed (a previous test may have changed the scale)."""
        scenario = copy.deepcopy(scenario)
        scenario.setdefault("clock", {}).setdefault("scale", 1.0)
        self.emulator.load_scenario(scenario)

    def env(self, **overrides: str) -> dict[str, str]:
        """App settings as the Functions host would pass them; `overrides` win."""
        return {
            "BACKUPWARDEN_ARM_ENDPOINT": self.server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "x",
            "BACKUPWARDEN_CA_BUNDLE": self.server.ca_bundle,
            "BACKUPWARDEN_HTTP_RETRY_TOTAL": "2",
            "AzureWebJobsStorage": self.storage,
            "BACKUPWARDEN_LEDGER_TABLE": self.ledger_table,
            **overrides,
        }

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env(**overrides))

    def clients(self, settings: Settings) -> AzureClients:
        """Separate SDK clients, like a separate function instance; closed at teardown."""
        opened = AzureClients(settings)
        self._opened.append(opened)
        return opened

    def sweep(self, dry_run: bool | None = None, **overrides: str) -> Sweep:
        settings = self.settings(**overrides)
        return build_sweep(settings, self.clients(settings), dry_run=dry_run, now=self.emulator.now)

    def run(self, dry_run: bool | None = None, **overrides: str) -> RunReport:
        return self.sweep(dry_run, **overrides).run()

    def backup_posts(self) -> list[str]:
        """Paths of every "Backup now" POST the emulator received, in order."""
        return [e.path for e in self.requests() if e.method == "POST" and BACKUP_POST.search(e.path)]

    def backup_post_vms(self) -> list[str]:
        """The (lower-case) name of the VM of every "Backup now" POST, in order."""
        return [match["vm"] for path in self.backup_posts() if (match := BACKUP_POST.search(path))]

    def requests(self) -> list[LoggedRequest]:
        return self.emulator.requests.entries()

    def close(self) -> None:
        for opened in self._opened:
            opened.close()
        with TableServiceClient.from_connection_string(self.storage) as service:
            service.delete_table(self.ledger_table)


@pytest.fixture
def sweep_bench(emulator: Emulator, emulator_server: EmulatorServer, azurite: str) -> Iterator[SweepBench]:
    bench = SweepBench(emulator, emulator_server, azurite)
    yield bench
    bench.close()


@pytest.fixture
def demo_bench(sweep_bench: SweepBench) -> SweepBench:
    """The bench with the demo estate loaded."""
    sweep_bench.load(demo_scenario())
    return sweep_bench
