"""Settings: defaults, every valid form, and every malformed value failing with the setting's name."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from backupwarden.settings import (
    AZURITE_ACCOUNT_KEY,
    DEFAULT_OPENID_CONFIGURATION_URL,
    SETTING_NAMES,
    SETTINGS,
    CredentialKind,
    DiscoveryMode,
    Settings,
    SettingsError,
    azurite_connection_string,
    parse_duration,
)

SUB_A = "11111111-1111-4111-8111-111111111111"
SUB_B = "22222222-2222-4222-8222-222222222222"
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
README = Path(__file__).resolve().parents[1] / "README.md"


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_defaults() -> None:
    parsed = settings()
    assert parsed.subscriptions == ()
    assert parsed.discovery is DiscoveryMode.RESOURCE_GRAPH
    assert parsed.arm_endpoint == "https://management.azure.com"
    assert parsed.resource_graph_endpoint == "https://management.azure.com"
    assert parsed.log_analytics_endpoint == "https://api.loganalytics.io"
    assert parsed.logs_ingestion_endpoint is None
    assert parsed.credential is CredentialKind.DEFAULT
    assert parsed.static_token is None
    assert parsed.ca_bundle is None
    assert parsed.connection_verify is True
    assert parsed.grace_period == timedelta(hours=1)
    assert parsed.dry_run is False
    assert parsed.daily_budget == 3
    assert parsed.max_triggers_per_run == 500
    assert parsed.recovery_point_expiry_days == 30
    assert parsed.ledger_table == "backupwardenledger"
    assert parsed.sweep_schedule == "0 */30 * * * *"
    assert parsed.http_retry_total == 5
    assert parsed.operation_poll_timeout_s == 300


def test_blank_values_count_as_unset() -> None:
    assert settings(BACKUPWARDEN_DAILY_BUDGET="  ", BACKUPWARDEN_DISCOVERY="") == settings()


def test_reads_os_environ_when_no_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("BACKUPWARDEN_DAILY_BUDGET", "7")
    assert Settings.from_env().daily_budget == 7


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("BACKUPWARDEN_SUBSCRIPTIONS", f"{SUB_A}, {SUB_B.upper()},{SUB_A},", "subscriptions", (SUB_A, SUB_B)),
        ("BACKUPWARDEN_DISCOVERY", "vaults", "discovery", DiscoveryMode.VAULTS),
        ("BACKUPWARDEN_DISCOVERY", "Resource-Graph", "discovery", DiscoveryMode.RESOURCE_GRAPH),
        ("BACKUPWARDEN_GRACE_PERIOD", "0", "grace_period", timedelta(0)),
        ("BACKUPWARDEN_GRACE_PERIOD", "30m", "grace_period", timedelta(minutes=30)),
        ("BACKUPWARDEN_DRY_RUN", "true", "dry_run", True),
        ("BACKUPWARDEN_DRY_RUN", "1", "dry_run", True),
        ("BACKUPWARDEN_DRY_RUN", "FALSE", "dry_run", False),
        ("BACKUPWARDEN_DRY_RUN", "0", "dry_run", False),
        ("BACKUPWARDEN_DAILY_BUDGET", "1", "daily_budget", 1),
        ("BACKUPWARDEN_DAILY_BUDGET", "9", "daily_budget", 9),
        ("BACKUPWARDEN_MAX_TRIGGERS_PER_RUN", "1", "max_triggers_per_run", 1),
        ("BACKUPWARDEN_RECOVERY_POINT_EXPIRY_DAYS", "9999", "recovery_point_expiry_days", 9999),
        ("BACKUPWARDEN_LEDGER_TABLE", "Ledger2", "ledger_table", "Ledger2"),
        ("SWEEP_SCHEDULE", "0  5 *  * * *", "sweep_schedule", "0 5 * * * *"),
        ("SWEEP_SCHEDULE", "0 0 */2 * * Mon-Fri", "sweep_schedule", "0 0 */2 * * Mon-Fri"),
        ("BACKUPWARDEN_HTTP_RETRY_TOTAL", "0", "http_retry_total", 0),
        ("BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S", "60", "operation_poll_timeout_s", 60),
    ],
)
def test_valid_values(name: str, value: str, attribute: str, expected: Any) -> None:
    assert getattr(settings(**{name: value}), attribute) == expected


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("BACKUPWARDEN_ARM_ENDPOINT", "arm_endpoint"),
        ("BACKUPWARDEN_RESOURCE_GRAPH_ENDPOINT", "resource_graph_endpoint"),
        ("BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT", "log_analytics_endpoint"),
        ("BACKUPWARDEN_LOGS_INGESTION_ENDPOINT", "logs_ingestion_endpoint"),
    ],
)
def test_endpoints_keep_host_and_port_without_trailing_slash(name: str, attribute: str) -> None:
    assert getattr(settings(**{name: "https://127.0.0.1:8443/"}), attribute) == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUPWARDEN_SUBSCRIPTIONS", "not-a-guid"),
        ("BACKUPWARDEN_SUBSCRIPTIONS", f"{SUB_A},1111111-1111-4111-8111-111111111111"),
        ("BACKUPWARDEN_DISCOVERY", "foo"),
        ("BACKUPWARDEN_ARM_ENDPOINT", "http://management.azure.com"),
        ("BACKUPWARDEN_ARM_ENDPOINT", "management.azure.com"),
        ("BACKUPWARDEN_ARM_ENDPOINT", "https://management.azure.com/?x=1"),
        ("BACKUPWARDEN_RESOURCE_GRAPH_ENDPOINT", "ftp://arg.example"),
        ("BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT", "https://"),
        ("BACKUPWARDEN_LOGS_INGESTION_ENDPOINT", "dce.example"),
        ("BACKUPWARDEN_CREDENTIAL", "password"),
        ("BACKUPWARDEN_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("BACKUPWARDEN_GRACE_PERIOD", "1 hour"),
        ("BACKUPWARDEN_GRACE_PERIOD", "-1h"),
        ("BACKUPWARDEN_GRACE_PERIOD", "1.5h"),
        ("BACKUPWARDEN_DRY_RUN", "maybe"),
        ("BACKUPWARDEN_DAILY_BUDGET", "10"),
        ("BACKUPWARDEN_DAILY_BUDGET", "0"),
        ("BACKUPWARDEN_DAILY_BUDGET", "three"),
        ("BACKUPWARDEN_MAX_TRIGGERS_PER_RUN", "0"),
        ("BACKUPWARDEN_RECOVERY_POINT_EXPIRY_DAYS", "10000"),
        ("BACKUPWARDEN_LEDGER_TABLE", "ledger-table"),
        ("BACKUPWARDEN_LEDGER_TABLE", "1ledger"),
        ("BACKUPWARDEN_LEDGER_TABLE", "ab"),
        ("BACKUPWARDEN_LEDGER_TABLE", "tables"),
        ("SWEEP_SCHEDULE", "*/30 * * * *"),
        ("SWEEP_SCHEDULE", "0 */30 * * * * *"),
        ("SWEEP_SCHEDULE", "0 */30 * * * ?"),
        ("BACKUPWARDEN_HTTP_RETRY_TOTAL", "-1"),
        ("BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S", "0"),
        ("RECONCILE_SCHEDULE", "0 15 * * *"),
        ("RECONCILE_SCHEDULE", "0 75 * * * *"),
        ("BACKUPWARDEN_COVERAGE_TARGET", "101"),
        ("BACKUPWARDEN_COVERAGE_TARGET", "-1"),
        ("BACKUPWARDEN_COVERAGE_TARGET", "ninety"),
        ("BACKUPWARDEN_COVERAGE_TARGET", "nan"),
        ("BACKUPWARDEN_COVERAGE_TARGET", "95%"),
        ("BACKUPWARDEN_ENROLL_EXISTING", "some"),
        ("AzureWebJobsStorage", "not a connection string"),
        ("AzureWebJobsStorage", "DefaultEndpointsProtocol=https;EndpointSuffix=core.windows.net"),
    ],
)
def test_malformed_value_fails_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings(**{name: value})
    assert str(raised.value).startswith(f"{name}: ")


def test_budget_ten_names_the_setting_and_the_limit() -> None:
    with pytest.raises(SettingsError, match=r"^BACKUPWARDEN_DAILY_BUDGET: must be from 1 to 9, not 10$"):
        settings(BACKUPWARDEN_DAILY_BUDGET="10")


def test_coverage_target_names_the_setting_and_the_range() -> None:
    with pytest.raises(
        SettingsError, match=r"^BACKUPWARDEN_COVERAGE_TARGET: must be from 0 to 100, not 101$"
    ):
        settings(BACKUPWARDEN_COVERAGE_TARGET="101")
    assert settings(BACKUPWARDEN_COVERAGE_TARGET="99.5").coverage_target == 99.5


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_static_token_credential_requires_the_token() -> None:
    with pytest.raises(SettingsError, match=r"^BACKUPWARDEN_STATIC_TOKEN: missing"):
        settings(BACKUPWARDEN_CREDENTIAL="static-token")
    parsed = settings(BACKUPWARDEN_CREDENTIAL="static-token", BACKUPWARDEN_STATIC_TOKEN="t0ken")
    assert parsed.credential is CredentialKind.STATIC_TOKEN
    assert parsed.static_token == "t0ken"
    assert "t0ken" not in repr(parsed)


def test_static_token_is_ignored_for_the_default_credential() -> None:
    assert settings(BACKUPWARDEN_STATIC_TOKEN="t0ken").static_token is None


def test_ca_bundle_must_exist_and_becomes_connection_verify(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    parsed = settings(BACKUPWARDEN_CA_BUNDLE=str(bundle))
    assert parsed.ca_bundle == str(bundle.resolve())
    assert parsed.connection_verify == str(bundle.resolve())
    with pytest.raises(SettingsError, match=r"^BACKUPWARDEN_CA_BUNDLE: no such file"):
        settings(BACKUPWARDEN_CA_BUNDLE=str(tmp_path))


def test_resource_graph_endpoint_follows_the_arm_endpoint() -> None:
    parsed = settings(BACKUPWARDEN_ARM_ENDPOINT="https://127.0.0.1:9443")
    assert parsed.resource_graph_endpoint == "https://127.0.0.1:9443"


def test_development_storage_means_azurite_default_ports() -> None:
    parsed = settings(AzureWebJobsStorage="UseDevelopmentStorage=true")
    assert parsed.storage_connection_string == azurite_connection_string(10000, 10001, 10002)
    table_endpoint = "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    assert table_endpoint in (parsed.storage_connection_string or "")


def test_connection_string_is_kept_and_never_shown() -> None:
    connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURITE_ACCOUNT_KEY}"
    parsed = settings(AzureWebJobsStorage=connection)
    assert parsed.storage_connection_string == connection
    assert parsed.storage_table_uri is None
    assert AZURITE_ACCOUNT_KEY not in repr(parsed)


def test_malformed_connection_string_error_does_not_echo_the_value() -> None:
    with pytest.raises(SettingsError) as raised:
        settings(AzureWebJobsStorage="AccountKey=secretvalue;broken")
    assert "secretvalue" not in str(raised.value)


def test_identity_based_storage_from_account_name() -> None:
    parsed = Settings.from_env({"AzureWebJobsStorage__accountName": "bwstore01"})
    assert parsed.storage_connection_string is None
    assert parsed.storage_table_uri == "https://bwstore01.table.core.windows.net"
    assert parsed.storage_queue_uri == "https://bwstore01.queue.core.windows.net"


def test_identity_based_storage_from_service_uris() -> None:
    parsed = Settings.from_env(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://t.example/",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example",
        }
    )
    assert (parsed.storage_table_uri, parsed.storage_queue_uri) == ("https://t.example", "https://q.example")


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage__accountName": "Bad_Name"}, "AzureWebJobsStorage__accountName"),
        ({"AzureWebJobsStorage__tableServiceUri": "http://t.ex"}, "AzureWebJobsStorage__tableServiceUri"),
    ],
)
def test_storage_missing_or_malformed_fails_naming_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert str(raised.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0s", timedelta(0)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "60", "1w", "1m1h", "1h 30m", "-5m", "1.5h", "PT1H"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_table_names_each_setting_once_and_fills_every_field_once() -> None:
    assert len(SETTING_NAMES) == len(set(SETTING_NAMES))
    filled = [setting.field for setting in SETTINGS if setting.field != "storage_account_name"]
    assert sorted(filled) == sorted(field.name for field in dataclasses.fields(Settings))


def test_missing_storage_is_reported_before_other_settings() -> None:
    with pytest.raises(SettingsError, match=r"^AzureWebJobsStorage: missing"):
        Settings.from_env({"BACKUPWARDEN_DAILY_BUDGET": "10"})


# How README's settings table words a default where it is not the value in backticks.
README_WORDING = {
    "BACKUPWARDEN_SUBSCRIPTIONS": "empty",
    "BACKUPWARDEN_VAULT_RULES": "`[]`",  # a JSON array
    "BACKUPWARDEN_RESOURCE_GRAPH_ENDPOINT": "the ARM endpoint",
    "BACKUPWARDEN_OPENID_CONFIGURATION_URL": f"`{DEFAULT_OPENID_CONFIGURATION_URL}`",
}


def _as_readme_states_it(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{_duration_text(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(part, float) for part in value):
        return f"`{value[0]:g}/{value[1]:g}`"  # a token bucket
    return f"`{value}`"


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts = []
    for unit, size in units:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0"


def test_readme_gives_each_setting_its_default() -> None:
    stated = dict(re.findall(r"^\| `(\w+)`[^|]*\| ([^|]+?) \|", README.read_text(), re.MULTILINE))
    defaults = Settings()
    wrong = {}
    for setting in SETTINGS:
        if setting.name.startswith("AzureWebJobsStorage"):
            continue  # a rule between four settings; README words it
        expected = README_WORDING.get(setting.name) or _as_readme_states_it(getattr(defaults, setting.field))
        cell = stated.get(setting.name, "(no row)")
        if cell != expected and not cell.startswith(f"{expected} "):
            wrong[setting.name] = (cell, expected)
    assert wrong == {}
