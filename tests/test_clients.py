"""The client factory: every SDK client gets the configured endpoint, credential, CA bundle and retries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.pipeline.policies import RetryPolicy
from azure.identity import DefaultAzureCredential

from backupwarden.adapters.azure.clients import (
    AzureClients,
    RateLimitHeaderLogger,
    StaticTokenCredential,
    SteadyEnvironmentSession,
    build_credential,
)
from backupwarden.adapters.azure.pacing import BucketRate
from backupwarden.adapters.storage.ledger import Ledger
from backupwarden.app import build_clients, forget_shared_pacers, process_pacer, shared_clients
from backupwarden.settings import Settings, SettingsError, azurite_connection_string
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.estate import Subscription

SUB = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def app_env(emulator_server: EmulatorServer, emulator: Emulator) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BACKUPWARDEN_ARM_ENDPOINT": emulator_server.endpoint,
        "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": emulator_server.endpoint,
        "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": emulator_server.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "emulator-token",
        "BACKUPWARDEN_CA_BUNDLE": emulator_server.ca_bundle,
        "BACKUPWARDEN_HTTP_RETRY_TOTAL": "2",
    }


@pytest.fixture
def settings(app_env: dict[str, str]) -> Settings:
    return Settings.from_env(app_env)


@pytest.fixture
def clients(settings: Settings) -> Iterator[AzureClients]:
    with AzureClients(settings) as built:
        yield built


def _policies(client: Any) -> list[Any]:
    """The policies of a client's pipeline, in order (test-only introspection)."""
    pipeline = client._client._pipeline
    return [getattr(policy, "_policy", policy) for policy in pipeline._impl_policies]


def _transport_verify(client: Any) -> Any:
    return client._client._pipeline._transport.connection_config.verify


BUILDERS: dict[str, Callable[[AzureClients], Any]] = {
    "subscriptions": lambda c: c.subscriptions(),
    "compute": lambda c: c.compute(SUB),
    "recovery_services": lambda c: c.recovery_services(SUB),
    "backup": lambda c: c.backup(SUB),
    "resource_graph": lambda c: c.resource_graph(),
    "logs_ingestion": lambda c: c.logs_ingestion(),
    "logs_query": lambda c: c.logs_query(),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_client_has_the_configured_retries_quota_logging_and_ca(
    clients: AzureClients, settings: Settings, name: str
) -> None:
    client = BUILDERS[name](clients)
    policies = _policies(client)
    retry = next(policy for policy in policies if isinstance(policy, RetryPolicy))
    assert (retry.total_retries, retry.status_retries) == (2, 2)
    assert isinstance(policies[policies.index(retry) + 1], RateLimitHeaderLogger)  # sees every try
    assert _transport_verify(client) == settings.ca_bundle
    assert client._config.credential is clients.credential


ARM_CLIENTS = ["subscriptions", "compute", "recovery_services", "backup", "resource_graph"]


@pytest.mark.parametrize("name", ARM_CLIENTS)
def test_arm_clients_target_the_arm_endpoint_and_its_audience(
    clients: AzureClients, settings: Settings, name: str
) -> None:
    client = BUILDERS[name](clients)
    assert client._config.credential_scopes == [f"{settings.arm_endpoint}/.default"]
    base_url = getattr(client._config, "base_url", None) or client._client._base_url
    assert base_url == settings.arm_endpoint


def test_clients_are_cached_per_subscription(clients: AzureClients) -> None:
    assert clients.backup(SUB) is clients.backup(SUB.upper())
    assert clients.backup(SUB) is not clients.backup("22222222-2222-4222-8222-222222222222")
    assert clients.subscriptions() is clients.subscriptions()


def test_static_token_and_default_credentials(settings: Settings) -> None:
    static = build_credential(settings)
    assert isinstance(static, StaticTokenCredential)
    assert static.get_token("https://management.azure.com/.default").token == "emulator-token"
    default = build_credential(Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
    assert isinstance(default, DefaultAzureCredential)


def test_logs_ingestion_without_an_endpoint_names_the_setting() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    with (
        AzureClients(settings, credential=StaticTokenCredential("t")) as clients,
        pytest.raises(SettingsError, match=r"^BACKUPWARDEN_LOGS_INGESTION_ENDPOINT: "),
    ):
        clients.logs_ingestion()


def test_arm_request_reaches_the_emulator_over_tls_with_the_token(
    clients: AzureClients, emulator: Emulator
) -> None:
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(SUB, "Production"))

    subscription = clients.subscriptions().subscriptions.get(SUB)

    assert subscription.subscription_id == SUB
    assert subscription.display_name == "Production"
    served = [entry for entry in emulator.requests.entries() if entry.path == f"/subscriptions/{SUB}"]
    assert [entry.status for entry in served] == [200]


def test_throttled_arm_read_is_retried_and_quota_headers_are_logged(
    clients: AzureClients, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(SUB, "Production"))
    emulator.faults.add(Fault(path_regex=f"^/subscriptions/{SUB}$", status=429, remaining=1, retry_after_s=0))

    with caplog.at_level(logging.DEBUG, logger="backupwarden.adapters.azure.clients"):
        subscription = clients.subscriptions().subscriptions.get(SUB)

    assert subscription.subscription_id == SUB
    served = [entry.status for entry in emulator.requests.entries() if entry.path == f"/subscriptions/{SUB}"]
    assert served == [429, 200]
    quota_logs = [record for record in caplog.records if record.getMessage() == "arm quota remaining"]
    assert quota_logs, "the x-ms-ratelimit-remaining-* header of the 200 should be logged at DEBUG"
    quota = quota_logs[-1].quota  # type: ignore[attr-defined]
    assert "x-ms-ratelimit-remaining-subscription-reads" in quota


def test_ledger_table_reaches_azurite_by_connection_string(azurite: str) -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": azurite, "BACKUPWARDEN_LEDGER_TABLE": "clientsledger"}
    )
    with AzureClients(settings, credential=StaticTokenCredential("unused")) as clients:
        table = clients.ledger_table()
        assert table.table_name == "clientsledger"
        assert clients.ledger_table() is table
        Ledger(table).ensure_table()
        assert table.get_table_access_policy() == {}
        table.delete_table()


def test_identity_based_ledger_table_uses_the_factory_credential() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage__accountName": "bwstore01"})
    credential = StaticTokenCredential("t")
    with AzureClients(settings, credential=credential) as clients:
        table = clients.ledger_table()
        assert table.url.startswith("https://bwstore01.table.core.windows.net")
        assert table.credential is credential


def test_session_reads_netrc_once_per_host_and_applies_what_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine proxy.example.test login alice password s3cret\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))
    session = SteadyEnvironmentSession()

    def authorization(url: str) -> str | None:
        return session.prepare_request(requests.Request("GET", url)).headers.get("Authorization")

    listed = authorization("https://proxy.example.test/a")
    unlisted = authorization("https://management.example.test/a")
    netrc.unlink()  # read once per host: the answers stay as they were

    assert listed is not None and listed.startswith("Basic ")
    assert authorization("https://proxy.example.test/b") == listed
    assert unlisted is None and authorization("https://management.example.test/b") is None
    bearer = requests.Request("GET", "https://proxy.example.test/c", headers={"Authorization": "Bearer t"})
    assert session.prepare_request(bearer).headers["Authorization"] == listed, "as requests itself does"


def test_session_reads_the_proxy_environment_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    session = SteadyEnvironmentSession()

    first = session.merge_environment_settings("https://management.example.test/a", {}, None, True, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example.test:3128")
    again = session.merge_environment_settings("https://management.example.test/b", {}, None, True, None)
    local = session.merge_environment_settings("https://localhost:8443/a", {}, None, True, None)
    explicit = session.merge_environment_settings(
        "https://management.example.test/c", {"https": "http://explicit.example.test:1"}, None, True, None
    )

    assert first["proxies"]["https"] == again["proxies"]["https"] == "http://proxy.example.test:3128"
    assert "https" not in local["proxies"]
    assert explicit["proxies"]["https"] == "http://explicit.example.test:1"


def test_shared_clients_are_one_per_settings_and_the_oldest_is_closed_past_the_limit(
    app_env: dict[str, str], settings: Settings
) -> None:
    first = shared_clients(settings)
    first.backup(SUB)  # a built SDK client, to see the eviction close it

    assert shared_clients(Settings.from_env(app_env)) is first, "equal settings, same clients"
    others = [
        shared_clients(Settings.from_env({**app_env, "BACKUPWARDEN_LEDGER_TABLE": f"ledger{n}"}))
        for n in range(8)
    ]
    assert first not in others and len({id(o) for o in others}) == 8
    assert first._clients == {}, "evicted past the limit and closed"  # test-only introspection
    assert shared_clients(settings) is not first


def test_settings_that_differ_only_in_a_secret_do_not_share_clients(
    app_env: dict[str, str], settings: Settings
) -> None:
    # The connection string and the static token are hidden from the settings' repr; two storage
    # accounts (or a storage setting restored after an outage) must not get each other's clients.
    other_storage = Settings.from_env(
        {**app_env, "AzureWebJobsStorage": azurite_connection_string(20000, 20001, 20002)}
    )
    assert repr(other_storage) == repr(settings), "the premise: repr hides the connection string"
    other_token = Settings.from_env({**app_env, "BACKUPWARDEN_STATIC_TOKEN": "another-token"})

    assert shared_clients(other_storage) is not shared_clients(settings)
    assert shared_clients(other_token) is not shared_clients(settings)
    assert shared_clients(Settings.from_env(app_env)) is shared_clients(settings)


def test_every_client_the_app_builds_paces_with_the_one_pacer_of_the_process(
    app_env: dict[str, str], settings: Settings
) -> None:
    other_tables = Settings.from_env({**app_env, "BACKUPWARDEN_LEDGER_TABLE": "ledgerpaced"})
    with build_clients(settings) as own, AzureClients(settings) as unmanaged:
        assert own.pacer is shared_clients(other_tables).pacer is process_pacer(settings)
        assert unmanaged.pacer is not own.pacer, "clients built outside the app pace on their own"
        assert own.pacer.rates["write"] == BucketRate(200, 10)
    slower = Settings.from_env({**app_env, "BACKUPWARDEN_ARM_WRITE_BUCKET": "20/5"})
    assert process_pacer(slower) is not process_pacer(settings), "other bucket rates, other buckets"
    assert process_pacer(slower).rates["write"] == BucketRate(20, 5)
    forget_shared_pacers()
    assert process_pacer(settings) is not own.pacer, "forgotten: a fresh process's full buckets"


def test_ensure_once_runs_once_per_name_and_again_after_a_failure(clients: AzureClients) -> None:
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("table service down")

    with pytest.raises(RuntimeError):
        clients.ensure_once("table a", failing)
    for _ in range(3):
        clients.ensure_once("table a", lambda: calls.append("a"))
        clients.ensure_once("table b", lambda: calls.append("b"))

    assert calls == ["failing", "a", "b"]
