"""Logs Ingestion and Log Analytics query adapters against real answers.

Recordings: the Azure SDK for Python's own monitor tests (azure-sdk-assets; tests/recordings/README.md):
an upload answered 204, an upload to an unknown data collection rule answered 404, a query answered
200 and one answered 400 BadArgumentError > SemanticError > SEM0100.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.logs_ingestion import IngestionUnavailable, LogsUploader
from backupwarden.adapters.azure.logs_query import LogsQuery
from tests.contract.recorded import ZEROED_ID
from tests.replay import ReplayServer, load

STREAM = "test-stream"


def test_upload_answered_204(replay: ReplayServer, replay_clients: AzureClients) -> None:
    replay.play(load("monitor/logs_ingestion.test_send_logs.dataplane-excerpt.json"))
    rows = [
        {
            "Time": "2021-12-08T23:51:14.1104269Z",
            "Computer": "Computer1",
            "AdditionalContext": {"testContextKey": 3},
        },
        {
            "Time": "2021-12-08T23:51:14.1104269Z",
            "Computer": "Computer2",
            "AdditionalContext": {"testContextKey": 2},
        },
    ]

    LogsUploader(replay_clients.logs_ingestion(), ZEROED_ID).upload(STREAM, rows)

    assert [
        (exchange.method, exchange.interaction and exchange.interaction.status)
        for exchange in replay.exchanges
    ] == [("POST", 204)]


def test_upload_to_an_unknown_rule_carries_the_service_message(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load("monitor/logs_ingestion.test_send_logs_error.dataplane-excerpt.json"))

    with pytest.raises(IngestionUnavailable) as raised:
        LogsUploader(replay_clients.logs_ingestion(), "bad-rule").upload(STREAM, [{"foo": "bar"}])

    assert "HTTP 404" in str(raised.value)
    assert "Data collection rule with immutable Id 'bad-rule' not found." in str(raised.value)


def test_query_answered_200_gives_the_rows_of_the_first_table(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load("monitor/logs_query.test_logs_single_query.dataplane-excerpt.json"))
    query = (
        "AppRequests | summarize avgRequestDuration=avg(DurationMs) by bin(TimeGenerated, 10m), _ResourceId"
    )

    rows = LogsQuery(replay_clients.logs_query(), ZEROED_ID).rows(query, timedelta(hours=12))

    assert rows == []  # as recorded: the table's columns, no rows
    assert replay.unused() == []


def test_query_answered_400_names_the_innermost_cause(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load("monitor/logs_query.test_logs_single_query_with_non_200.dataplane-excerpt.json"))

    with pytest.raises(AzureCallError) as raised:
        LogsQuery(replay_clients.logs_query(), ZEROED_ID).rows(
            "AppInsights", timedelta(hours=12), step="report"
        )

    error = raised.value
    assert (error.step, error.status) == ("report", 400)
    assert error.code == "BadArgumentError"
    assert (
        error.message == "'where' operator: Failed to resolve table or column expression named 'AppInsights'"
    )
