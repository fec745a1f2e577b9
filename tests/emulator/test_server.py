"""The standalone server: `python -m emulator serve` prints one JSON line, then serves the scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_serve_prints_endpoint_and_ca_then_serves_the_demo_scenario() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--scenario",
            "demo",
            "--port",
            "0",
            "--time-scale",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert set(first) == {"endpoint", "ca_bundle"}
        assert first["endpoint"].startswith("https://127.0.0.1:")
        assert Path(first["ca_bundle"]).is_absolute()
        clock = requests.get(
            f"{first['endpoint']}/_emulator/clock", verify=first["ca_bundle"], timeout=10
        ).json()
        assert clock["scale"] == 60
        vaults = requests.get(
            f"{first['endpoint']}/subscriptions/11111111-1111-4111-8111-111111111111/providers/"
            "Microsoft.RecoveryServices/vaults?api-version=2026-11-01",
            headers={"Authorization": "Bearer x"},
            verify=first["ca_bundle"],
            timeout=10,
        )
        assert vaults.status_code == 200
        assert {v["name"] for v in vaults.json()["value"]} == {"rsv-prod-weu", "rsv-prod-neu"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_rejects_an_unknown_scenario_with_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--scenario", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "scenario 'nope'" in done.stderr
