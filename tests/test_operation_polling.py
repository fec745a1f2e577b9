"""Polling of running Recovery Services operations: Azure's `Retry-After: 60` counts only up to the interval.

A container refresh takes about 15 s and configuring protection about 35 s, yet Azure answers both
with `Retry-After: 60`; waiting the whole hint would make a new VM's first backup a minute late.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

from backupwarden.adapters.azure.protection import Protection
from backupwarden.adapters.azure.recovery_services import (
    MIN_POLL_INTERVAL_S,
    RecoveryServices,
    VaultRef,
    poll_delay_s,
)
from backupwarden.settings import Settings, SettingsError
from emulator import Emulator

SUBSCRIPTION = "33333333-3333-4333-8333-333333333333"
GROUPS = f"/subscriptions/{SUBSCRIPTION}/resourceGroups"
VAULT_ID = f"{GROUPS}/rg-backup/providers/Microsoft.RecoveryServices/vaults/rsv-weu"
VM_ID = f"{GROUPS}/rg-app/providers/Microsoft.Compute/virtualMachines/vm-new"
REFRESH_S, CONFIGURE_S = 15, 35


def new_vm_scenario() -> dict[str, Any]:
    """One vault and one VM it has not discovered yet; every operation answers `Retry-After: 60`."""
    return {
        "clock": {"scale": 1.0},  # Retry-After is sent in real seconds: 60 at scale 1
        "timings": {
            "refresh_containers_s": REFRESH_S,
            "configure_operation_s": CONFIGURE_S,
            "backup_operation_s": 0,
            "retry_after_s": 60,
        },
        "subscriptions": [
            {
                "id": SUBSCRIPTION,
                "vaults": [{"name": "rsv-weu", "resource_group": "rg-backup", "location": "westeurope"}],
                "vms": [{"name": "vm-new", "resource_group": "rg-app", "location": "westeurope"}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("retry_after_s", "poll_interval_s", "expected_s"),
    [
        (60, 1.0, 1.0),  # Azure's hint for a 15-35 s operation: capped
        (0.5, 1.0, 0.5),  # a shorter hint is honoured
        (0, 1.0, MIN_POLL_INTERVAL_S),  # no hint: never a tight loop
        (0, 0.1, 0.1),  # unless the interval itself is shorter
        (60, 0.05, 0.05),
    ],
)
def test_poll_delay_is_the_hint_capped_by_the_interval(
    retry_after_s: float, poll_interval_s: float, expected_s: float
) -> None:
    assert poll_delay_s(retry_after_s, poll_interval_s) == expected_s


def test_enabling_protection_polls_every_interval_not_every_retry_after(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    emulator.load_scenario(new_vm_scenario())
    client = RecoveryServicesBackupClient(subscription_id=SUBSCRIPTION, **sdk_kwargs)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the emulated clock moves by exactly what the worker waits
        waits.append(seconds)
        emulator.advance(seconds)

    recovery = RecoveryServices(lambda _: client, poll_interval_s=1.0, sleep=sleep)
    protection = Protection(lambda _: client, recovery, poll_interval_s=1.0, sleep=sleep)

    enabled = protection.enable(VaultRef.parse(VAULT_ID), VM_ID, "rg-app", "vm-new", "DefaultPolicy")

    assert enabled.job_id, enabled
    assert set(waits) == {1.0}, "every wait is the interval, none the 60 s Retry-After"
    # both operations were seen done within one interval of their end (the clock also runs in real time)
    assert REFRESH_S + CONFIGURE_S - 2 <= sum(waits) <= REFRESH_S + CONFIGURE_S + 2


@pytest.mark.parametrize(("raw", "expected"), [("1", 1.0), ("0.25", 0.25), ("60", 60.0), (" 0.01 ", 0.01)])
def test_poll_interval_setting_parses_seconds(raw: str, expected: float) -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S": raw}
    assert Settings.from_env(env).operation_poll_interval_s == expected


@pytest.mark.parametrize("raw", ["0", "0.001", "61", "nan", "inf", "soon"])
def test_poll_interval_setting_rejects_what_is_not_0_01_to_60_seconds(raw: str) -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S": raw}
    with pytest.raises(SettingsError, match=r"^BACKUPWARDEN_OPERATION_POLL_INTERVAL_S: "):
        Settings.from_env(env)
