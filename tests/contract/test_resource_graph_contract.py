"""Resource Graph (backupwarden/adapters/azure/resource_graph.py) against a real answer in the old format.

Recording: Cloud Custodian's ResourceGraphSource cassette, api-version 2019-04-01, whose `data` is a
table (`columns` + `rows`), the format that API version answered by default. The adapter asks for
`resultFormat: objectArray` (one mapping per row) and reads `data` as a list, `$skipToken` and
`resultTruncated`; an answer in the table format must fail loudly, not yield rows it cannot read.
"""

from __future__ import annotations

import pytest
from azure.mgmt.resourcegraph.models import QueryRequest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.discovery import ResourceGraphDiscovery
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.resource_graph import query_rows
from tests.contract.recorded import C7N_SUBSCRIPTION
from tests.replay import ReplayServer, load

RECORDING = "c7n-azure/ResourceGraphSource.test_resource_graph_and_arm_sources_vm_are_equivalent.json"
VMS_QUERY = "Resources | where type =~ 'microsoft.compute/virtualmachines'"


def test_a_table_format_answer_is_refused_with_a_clear_error(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load(RECORDING))

    with pytest.raises(AzureCallError) as raised:
        list(query_rows(replay_clients.resource_graph(), VMS_QUERY, [C7N_SUBSCRIPTION]))

    assert (raised.value.step, raised.value.code) == ("resource graph query", "UnexpectedResultFormat")
    assert replay.unused() == []


def test_discovery_by_resource_graph_reports_the_table_format_instead_of_finding_nothing(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load(RECORDING))
    discovery = ResourceGraphDiscovery(replay_clients.resource_graph())

    with pytest.raises(AzureCallError, match="UnexpectedResultFormat"):
        discovery.find_stuck_initial_backups([C7N_SUBSCRIPTION])


def test_the_paging_fields_the_adapter_reads_arrive_as_it_expects(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    """`resultTruncated` is the string "false" (the adapter compares its text), no `$skipToken` on a
    last page; the SDK hands `data` on as the JSON it received."""
    replay.play(load(RECORDING))

    page = replay_clients.resource_graph().resources(
        QueryRequest(subscriptions=[C7N_SUBSCRIPTION], query=VMS_QUERY)
    )

    assert str(page.result_truncated).lower() == "false"
    assert page.skip_token is None
    assert page.total_records == 2 and page.count == 2
    assert isinstance(page.data, dict)
    assert [column["name"] for column in page.data["columns"]][:4] == ["type", "id", "sku", "name"]
    assert page.data["rows"][0][3] == "cctestvm"
