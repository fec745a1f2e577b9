"""The replay server itself (tests/replay.py): what the contract tests rely on it to do."""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit

from tests.replay import UNMATCHED_STATUS, ReplayServer, load

VAULT_PATH = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/clitest.rg000001"
    "/providers/Microsoft.RecoveryServices/vaults/clitest-vault000002"
)
REFRESH = f"{VAULT_PATH}/backupFabrics/Azure/refreshContainers?api-version=2023-04-01"
POLL = f"{VAULT_PATH}/backupFabrics/Azure/operationResults/0cbfb857-20bd-4e2b-91a9-d9dc432fdca0"


def send(server: ReplayServer, method: str, target: str) -> http.client.HTTPResponse:
    """One raw request, so the answer's header names are seen exactly as sent."""
    context = ssl.create_default_context(cafile=server.ca_bundle)
    connection = http.client.HTTPSConnection(urlsplit(server.endpoint).netloc, context=context)
    connection.request(method, target, body=b"" if method == "POST" else None)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_headers_go_out_as_recorded_with_operation_urls_pointing_here(replay_server: ReplayServer) -> None:
    replay_server.play(load("azure-cli/enable_for_vm.yaml"))

    answer = send(replay_server, "POST", REFRESH)

    names = [name for name, _ in answer.getheaders()]
    assert answer.status == 202
    assert "location" in names and "azure-asyncoperation" in names and "Location" not in names
    assert answer.getheader("location", "").startswith(f"{replay_server.endpoint}{VAULT_PATH}/backupFabrics/")
    assert names.count("Content-Length") == 1 and "transfer-encoding" not in names


def test_repeated_requests_get_the_recorded_answers_in_order(replay_server: ReplayServer) -> None:
    """Matched whatever the path's case and encoding and the api-version; each answer served once."""
    replay_server.play(load("azure-cli/enable_for_vm.yaml"))
    variants = [f"{POLL}?api-version=2023-04-01", f"{POLL.lower()}?api-version=2099-01-01", f"{POLL}"]

    statuses = [send(replay_server, "GET", target).status for target in variants]
    fourth = send(replay_server, "GET", POLL)

    assert statuses == [202, 202, 204]
    assert fourth.status == UNMATCHED_STATUS
    assert [exchange.target for exchange in replay_server.unmatched] == [POLL]
    replay_server.play([])


def test_the_filter_decides_which_list_answers(replay_server: ReplayServer) -> None:
    replay_server.play(load("azure-cli/job_lists.yaml"))
    jobs = f"{VAULT_PATH}/backupJobs?api-version=2023-04-01"

    restore_only = send(replay_server, "GET", f"{jobs}&%24filter=operation%20eq%20%27Restore%27")
    unknown = send(replay_server, "GET", f"{jobs}&%24filter=operation%20eq%20%27Backup%27")

    assert restore_only.status == 200
    assert unknown.status == UNMATCHED_STATUS
    assert [exchange.interaction.source for exchange in replay_server.exchanges if exchange.interaction] == [
        "azure-cli/job_lists.yaml[1]"
    ]
    replay_server.play([])


def test_loaders_unwrap_each_format() -> None:
    (c7n,) = load("c7n-azure/RecoveryServicesTest.test_find_by_name.json")
    (proxy,) = load("monitor/logs_ingestion.test_send_logs_error.dataplane-excerpt.json")

    assert json.loads(c7n.body)["value"][0]["name"] == "cfbukqrkhntars655e53akvrc4k"  # without {"data": ...}
    assert json.loads(proxy.body)["error"]["code"] == "NotFound"
    assert (proxy.method, proxy.status) == ("POST", 404)
    assert ("x-ms-error-code", "NotFound") in proxy.headers
