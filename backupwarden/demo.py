"""`python -m backupwarden demo`: the sweep against the embedded emulator (demo scenario) and Azurite.

Starts both, runs the sweep exactly as the timer would, advances the emulated clock until the
triggered backups finish, then prints per VM what happened and why.
"""

from __future__ import annotations

from backupwarden.adapters.recovery_services import RecoveryServices, VaultRef
from backupwarden.clients import AzureClients
from backupwarden.domain.records import Result
from backupwarden.report import RunReport
from backupwarden.settings import Settings
from backupwarden.wiring import build_sweep
from emulator import Emulator, EmulatorServer
from emulator.azurite import Azurite
from emulator.scenario import load_scenario_file


def demo_settings(endpoint: str, ca_bundle: str, storage: str) -> Settings:
    return Settings.from_env(
        {
            "BACKUPWARDEN_ARM_ENDPOINT": endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "demo",
            "BACKUPWARDEN_CA_BUNDLE": ca_bundle,
            "AzureWebJobsStorage": storage,
        }
    )


def run_demo() -> int:
    emulator = Emulator()
    emulator.load_scenario(load_scenario_file("demo"))
    with Azurite() as azurite, EmulatorServer(emulator) as server:
        settings = demo_settings(server.endpoint, server.ca_bundle, azurite.connection_string)
        before = _states(emulator)
        with AzureClients(settings) as clients:
            report = build_sweep(settings, clients, now=emulator.now).run()
            emulator.advance(emulator.estate.timings.backup_job_s + 60)
            after = {**_states(emulator), **_verified_states(report, RecoveryServices(clients.backup))}
        print(_render(report, emulator, before, after))
        failed = [o for o in report.outcomes if o.result is Result.FAILED]
        print(f"\n{len(failed)} failed; emulator handled {emulator.requests.summary()['total']} requests.")
    return 0


def _states(emulator: Emulator) -> dict[str, str]:
    """Protection state per VM id, or 'unprotected'."""
    with emulator.lock:
        items = emulator.estate.protected_items
        return {
            vm_id: (items[vm_id].protection_state if vm_id in items else "unprotected")
            for vm_id in emulator.estate.vms
        }


def _verified_states(report: RunReport, recovery: RecoveryServices) -> dict[str, str]:
    """After the clock moved: each triggered VM's state and job, read back through Recovery Services."""
    states = {}
    for outcome in report.outcomes:
        if outcome.result is not Result.TRIGGERED:
            continue
        vault = VaultRef.parse(outcome.vault_id)
        rg, name = outcome.vm_id.split("/resourcegroups/")[1].split("/")[0], outcome.vm_id.rsplit("/", 1)[-1]
        item = recovery.protected_item(
            vault, f"iaasvmcontainer;iaasvmcontainerv2;{rg};{name}", f"vm;iaasvmcontainerv2;{rg};{name}"
        )
        state = str(item["properties"].get("protectionState"))
        if outcome.job_id:
            status, error_code = recovery.job_status(vault, outcome.job_id)
            state = f"{state} (job {status}{': ' + error_code if error_code else ''})"
        states[outcome.vm_id] = state
    return states


def _render(report: RunReport, emulator: Emulator, before: dict[str, str], after: dict[str, str]) -> str:
    by_vm = {o.vm_id: o for o in report.outcomes}
    rows = [("VM", "REGION", "BEFORE", "SWEEP", "WHY", "AFTER")]
    with emulator.lock:
        vms = sorted(emulator.estate.vms.values(), key=lambda vm: (vm.subscription_id, vm.location, vm.name))
    for vm in vms:
        key = vm.id.lower()
        outcome = by_vm.get(key)
        result = outcome.result.value if outcome else "-"
        why = outcome.reason if outcome else "not a candidate (not in initial-backup-pending)"
        if outcome and outcome.error_code:
            why = f"{why}: {outcome.error_code}"
        rows.append((vm.name, vm.location, before.get(key, "?"), result, why, after.get(key, "?")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row)).rstrip() for row in rows]
    summary = report.summary()
    lines += [
        "",
        f"sweep run {report.run_id}: {summary['candidates']} candidates; "
        + ", ".join(f"{summary[k]} {k}" for k in ("triggered", "skipped", "dry_run", "failed")),
    ]
    triggered = [o.vm_id for o in report.outcomes if o.result is Result.TRIGGERED]
    protected = sum(1 for vm_id in triggered if after.get(vm_id, "").startswith("Protected"))
    lines.append(
        f"after the emulated clock advanced: {protected} of {len(triggered)} triggered VMs are Protected"
    )
    return "\n".join(lines)
