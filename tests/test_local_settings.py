"""`local.settings.example.json`, copied as is for `func start`, cannot act on a real subscription: it
reaches Azurite and the local emulator only, with a token only the emulator takes, on the emulator's
subscriptions, in dry run. The README's walk-through starts the emulator where the example looks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from backupwarden.settings import CredentialKind, Settings, azurite_connection_string
from emulator.scenario import load_scenario_file

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost"}


def example_settings() -> Settings:
    example = json.loads((ROOT / "local.settings.example.json").read_text())
    return Settings.from_env(example["Values"])


def test_the_example_runs_in_dry_run() -> None:
    assert example_settings().dry_run is True


def test_the_example_reaches_local_endpoints_only() -> None:
    settings = example_settings()
    endpoints = [
        settings.arm_endpoint,
        settings.resource_graph_endpoint,
        settings.log_analytics_endpoint,
        settings.logs_ingestion_endpoint,
    ]
    assert {urlsplit(endpoint or "").hostname for endpoint in endpoints} <= LOOPBACK
    assert settings.openid_configuration is None
    assert settings.storage_connection_string == azurite_connection_string()


def test_the_example_never_uses_a_signed_in_users_credential() -> None:
    # DefaultAzureCredential would pick up an `az login` session; a static token reaches only the emulator.
    assert example_settings().credential is CredentialKind.STATIC_TOKEN


def test_the_example_names_the_emulators_subscriptions_only() -> None:
    # Empty would mean every subscription the credential can see.
    demo = {subscription["id"] for subscription in load_scenario_file("demo")["subscriptions"]}
    subscriptions = set(example_settings().subscriptions)
    assert subscriptions and subscriptions <= demo


def test_the_readme_starts_the_emulator_where_the_example_looks() -> None:
    readme = (ROOT / "README.md").read_text()
    ports = set(re.findall(r"python -m emulator serve --scenario demo --port (\d+)", readme))
    assert ports == {str(urlsplit(example_settings().arm_endpoint).port)}
