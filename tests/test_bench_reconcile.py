"""The reconciler benchmark at a tiny size, so it cannot rot: it runs end to end (emulator subprocess,
Azurite, the app as `coverage --act` builds it) and its figures add up; and the generator's state mix
it runs on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulator.azurite import AZURITE_BIN
from emulator.estate import Estate
from emulator.generator import ESCALATE_FAILURE, RETRYABLE_FAILURE, generate_estate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not AZURITE_BIN.exists(), reason="Azurite is not installed (npm ci)")
def test_the_reconcile_bench_runs_at_a_tiny_size_and_its_figures_add_up() -> None:
    # 400 VMs over 4 subscriptions: one vault of 100 VMs each, so every mixed state gets a VM
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.reconcile",
            "--vms",
            "400",
            "--subscriptions",
            "4",
            "--latency-ms",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert found["vms"] == 400
    # per vault: 2 pending, 2 stale (1.5 % rounded up), 1 failing with a retryable error to back up;
    # 1 failing with a non-retryable error, 1 stopped, 1 orphaned to escalate; 2 unprotected (reported)
    assert found["decisions"] == {
        "reconcile_backup_now triggered": 20,
        "reconcile_escalate escalated": 12,
    }
    assert found["acted_on"] == 32
    assert (found["expected_triggers"], found["triggered_vms"], found["duplicate_triggers"]) == (20, 20, 0)
    assert found["checks"]["each VM to back up triggered once"] is True
    kinds = found["arm_requests_by_kind"]
    assert kinds["per-VM writes"] == 20  # one "Backup now" per VM to back up
    assert kinds["per-vault/policy lists"] == 4  # one policy list per vault
    assert kinds["Resource Graph pages"] == 3  # VMs, items, failed jobs: one page each
    assert sum(kinds.values()) == found["arm_requests"]
    assert found["arm_per_acted_vm"] == pytest.approx(found["arm_requests"] / 32, abs=1e-3)
    assert found["arm_per_written_vm"] == pytest.approx(found["arm_requests"] / 20, abs=1e-3)
    # each decision claims and settles one ledger key; each is one outbox record, plus the run's
    assert found["ledger_round_trips"] == 2 * 32
    assert found["outbox_round_trips"] == 32 + 1
    assert 0 < found["read_s"] <= found["wall_s"]
    assert found["peak_rss_mb"] > 0
    assert set(found["checks"]) == {
        "each VM to back up triggered once",
        "ARM requests per VM written to <= 1.5",
        "ledger round trips per acted-on VM <= 2",
        "wall <= 1.25 x bound",
        "peak RSS <= 300 MB",
    }
    assert done.returncode == (0 if all(found["checks"].values()) else 1)


def test_the_generator_lays_out_each_asked_state_per_vault() -> None:
    estate = Estate()
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    mix = {"stale": 3, "failing_retryable": 2, "failing_escalate": 1, "stopped": 1, "orphaned": 1}
    generate_estate(
        estate, start=start, vms_per_vault=100, unprotected_percent=2, stuck_percent=4, state_percents=mix
    )

    items = list(estate.protected_items.values())
    states = Counter(item.protection_state for item in items)
    assert states == {"Protected": 86 + 3 + 1, "IRPending": 4, "ProtectionError": 3, "ProtectionStopped": 1}
    assert len(estate.vms) == 100 - 1  # the orphaned item's VM is gone, its item stays
    assert len(items) == 100 - 2
    stale = [i for i in items if i.last_recovery_point == start - timedelta(days=3)]
    assert len(stale) == 3 + 3 + 1  # stale, failing and stopped items: their newest point is 3 days old
    failed = Counter(job.error_code for job in estate.jobs.values() if job.status == "Failed")
    assert failed == {RETRYABLE_FAILURE: 2, ESCALATE_FAILURE: 1}


def test_the_generator_refuses_a_mix_no_vault_can_hold() -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown states"):
        generate_estate(Estate(), start=start, state_percents={"sleepy": 1})
    with pytest.raises(ValueError, match="more than 100"):
        generate_estate(Estate(), start=start, stuck_percent=60, state_percents={"stale": 50})
