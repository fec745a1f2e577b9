"""The project's own files agree with the code: host.json, the example settings, README, .funcignore, and the
console script pyproject.toml declares (installed by `make venv`)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func

from backupwarden.settings import SETTING_NAMES, Settings
from emulator.azurite import connection_string

ROOT = Path(__file__).resolve().parents[1]


def _setting_names() -> set[str]:
    """Every setting name `Settings.from_env` reads (the settings table's names)."""
    return set(SETTING_NAMES)


def _example_values() -> dict[str, str]:
    example: dict[str, Any] = json.loads((ROOT / "local.settings.example.json").read_text())
    return dict(example["Values"])


def test_host_json_fits_the_consumption_plan_and_the_v4_bundle() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert (bundle["id"], bundle["version"]) == ("Microsoft.Azure.Functions.ExtensionBundle", "[4.*, 5.0.0)")
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    assert 0 < hours * 3600 + minutes * 60 + seconds <= 600


def test_example_settings_parse_to_the_defaults_but_for_the_local_run() -> None:
    values = _example_values()
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    parsed = vars(Settings.from_env(values))
    defaults = vars(Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
    # What makes a copied example safe (tests/test_local_settings.py): emulator, its subscriptions, dry run.
    local_run = {
        "subscriptions",
        "arm_endpoint",
        "resource_graph_endpoint",
        "log_analytics_endpoint",
        "logs_ingestion_endpoint",
        "credential",
        "static_token",
        "dry_run",
    }
    assert {name for name in defaults if parsed[name] != defaults[name]} == local_run


def test_every_setting_is_in_the_example_and_the_readme() -> None:
    names = _setting_names()
    assert {"BACKUPWARDEN_DISCOVERY", "BACKUPWARDEN_DAILY_BUDGET", "SWEEP_SCHEDULE"} <= names
    example = set(_example_values())
    identity_only = {name for name in names if name.startswith("AzureWebJobsStorage__")}
    assert names - identity_only - example == set()
    readme = (ROOT / "README.md").read_text()
    assert [name for name in sorted(names) if name.split("__")[-1] not in readme] == []


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert blocks[:2] == ["make demo", "make test"]


def test_ci_runs_make_test() -> None:
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_funcignore_keeps_local_tools_out_of_the_deployment() -> None:
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert {"emulator/", "tests/", "devtools/", "node_modules/", ".venv/", "local.settings.json"} <= ignored
    assert not ignored & {"backupwarden/", "functions/", "function_app.py", "host.json", "requirements.txt"}


def test_function_app_indexes_with_its_blueprints() -> None:
    import function_app

    app = importlib.reload(function_app).app  # get_functions() runs once an app; other tests index it too
    assert isinstance(app, func.FunctionApp)
    assert all(function.get_function_name() for function in app.get_functions())


def test_the_emulators_azurite_is_what_development_storage_means() -> None:
    # The emulator keeps its own copy of Azurite's well-known account; the app's must stay the same.
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert settings.storage_connection_string == connection_string(10000, 10001, 10002)


def test_the_console_script_lists_the_commands(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("backupwarden")
    assert script.exists(), f"{script} is missing: `make venv` installs it (pip install -e .)"
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: backupwarden ")
    for command in ("sweep", "remediate", "handle-event", "ship-outcomes", "report", "demo"):
        assert command in done.stdout


def test_python_m_backupwarden_names_itself_so_in_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backupwarden", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m backupwarden ")


def test_the_console_script_finds_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    # `backupwarden demo` looks up devtools.demo at run time; the editable install puts the checkout
    # on the interpreter's path, as `python -m` does from the checkout's root.
    find_the_demo = "import importlib.util; print(importlib.util.find_spec('devtools.demo').origin)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", find_the_demo], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "devtools" / "demo.py"
