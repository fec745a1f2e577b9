"""Fixtures of the contract tests: one replay server for the session, the project's clients pointed at it.

Each test loads the recorded interactions it needs (`replay.play(load(...))`); a request the
recordings do not answer fails the test at teardown, naming the request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.settings import Settings
from tests.replay import ReplayServer

HTTP_RETRY_TOTAL = 2  # a recorded 500 followed by its 200 needs one retry
POLL_INTERVAL_S = 0.01  # the recordings' polls follow each other without waiting


@pytest.fixture(scope="session")
def replay_server() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay(replay_server: ReplayServer) -> Iterator[ReplayServer]:
    """The session's replay server, emptied for this test; fails the test on an unmatched request."""
    replay_server.play([])
    yield replay_server
    unmatched = replay_server.unmatched
    assert not unmatched, "requests no recorded interaction answered:\n" + "\n".join(
        f"  {exchange.method} {exchange.target}" for exchange in unmatched
    )


def replay_env(server: ReplayServer, storage: str = "UseDevelopmentStorage=true") -> dict[str, str]:
    """App settings pointing every Azure client at the replay, as at the emulator (docs/emulator.md §2)."""
    return {
        "AzureWebJobsStorage": storage,
        "BACKUPWARDEN_ARM_ENDPOINT": server.endpoint,
        "BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT": server.endpoint,
        "BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": server.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "replay-token",
        "BACKUPWARDEN_CA_BUNDLE": server.ca_bundle,
        "BACKUPWARDEN_HTTP_RETRY_TOTAL": str(HTTP_RETRY_TOTAL),
        "BACKUPWARDEN_OPERATION_POLL_INTERVAL_S": str(POLL_INTERVAL_S),
        "BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S": "30",
    }


@pytest.fixture(scope="session")
def replay_settings(replay_server: ReplayServer) -> Settings:
    return Settings.from_env(replay_env(replay_server))


@pytest.fixture(scope="session")
def replay_clients(replay_settings: Settings) -> Iterator[AzureClients]:
    """The project's own clients (pipeline, retries, pacing) against the replay."""
    with AzureClients(replay_settings) as clients:
        yield clients


def recovery_services(clients: AzureClients) -> RecoveryServices:
    """The adapter as the composition root builds it, polling at the settings' interval."""
    settings = clients.settings
    return RecoveryServices(
        clients.backup,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
    )


@pytest.fixture
def recovery(replay_clients: AzureClients) -> RecoveryServices:
    return recovery_services(replay_clients)
