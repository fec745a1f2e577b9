"""The Functions app's own files agree with the code: host.json, the example settings, README, .funcignore."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import azure.functions as func

from backupwarden.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTING_NAME = re.compile(r'"((?:BACKUPWARDEN_[A-Z0-9_]+)|SWEEP_SCHEDULE|AzureWebJobsStorage(?:__\w+)?)"')


def _setting_names() -> set[str]:
    """Every setting name `backupwarden/settings.py` reads (its quoted names)."""
    source = (ROOT / "backupwarden" / "settings.py").read_text()
    names = set(SETTING_NAME.findall(source))
    identity_suffixes = ("accountName", "tableServiceUri", "queueServiceUri")  # built with f-strings there
    names |= {f"AzureWebJobsStorage__{suffix}" for suffix in identity_suffixes}
    return names


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


def test_example_settings_parse_to_the_defaults() -> None:
    values = _example_values()
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    parsed = Settings.from_env(values)
    assert parsed == Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


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
    assert {"emulator/", "tests/", "node_modules/", ".venv/", "local.settings.json"} <= ignored
    assert not ignored & {"backupwarden/", "functions/", "function_app.py", "host.json", "requirements.txt"}


def test_function_app_indexes_with_its_blueprints() -> None:
    import function_app

    app = importlib.reload(function_app).app  # get_functions() runs once an app; other tests index it too
    assert isinstance(app, func.FunctionApp)
    assert all(function.get_function_name() for function in app.get_functions())
