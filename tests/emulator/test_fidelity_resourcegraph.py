"""Resource Graph answers compared with the spec examples of the `resources` query route.

Each example's request body is sent as it is through ResourceGraphClient (with the example's
api-version) to an estate that holds what the example's query looks for; the answer must have
the example's status and shape.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

from emulator import Emulator
from emulator.estate import Subscription, Vault, VirtualMachine
from emulator.resourcegraph.models import ResourceGraphBackend
from tests.emulator.fidelity import assert_same_shape, load_example

SUBSCRIPTION = "cfbbd179-59d2-4052-aa06-9270a38aa9d6"  # the examples' subscription
TENANT = "e927f598-c1d4-4f72-8541-95d83a6a4ac8"  # the examples' first management group: the tenant root group
TAGS = {"tag1": "Value1"}
VERSIONS = ["2022-10-01", "2021-03-01"]
SERVED = [
    "ResourcesBasicQuery.json",
    "ResourcesTenantBasicQuery.json",
    "ResourcesMgBasicQuery.json",
    "ResourcesFilterQuery.json",
    "ResourcesSummarizeQuery.json",
    "ResourcesComplexQuery.json",
    "ResourcesPropertiesQuery.json",
    "ResourcesFacetQuery.json",
    "ResourcesFirstPageQuery.json",
    "ResourcesRandomPageQuery.json",
]
# The example names the column of `summarize count()` "count"; Kusto (and ARG, as the Complex
# query example shows with `count_`) names it `count_`.
# `facets` mixes FacetResult and FacetError entries, which `assert_same_shape` would compare
# with the first one; each facet is compared with its own example instead.
IGNORED = {
    "ResourcesPropertiesQuery.json": frozenset({"$.data[0].count", "$.data[1].count"}),
    "ResourcesFacetQuery.json": frozenset({"$.facets"}),
}


def example_path(version: str, name: str) -> str:
    return f"resourcegraph/resource-manager/Microsoft.ResourceGraph/stable/{version}/examples/{name}"


@pytest.fixture
def estate(emulator: Emulator) -> Emulator:
    """VMs named like the examples' (several holding "test"), in resource groups the facets look for."""
    emulator.backend(ResourceGraphBackend).configure(
        {"quota_per_5s": 1000, "management_groups": {"ProductionMG": []}}
    )
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(SUBSCRIPTION, "examples", tenant_id=TENANT))
        emulator.estate.add_vault(Vault(SUBSCRIPTION, "RG1", "testvault", "eastus", tags=dict(TAGS)))
        groups = ["B-TEST-RG", "c-rg", "x-test-rg", "I-RG"]
        locations = ["eastus", "westus", "centralus"]
        for index in range(15):
            emulator.estate.add_vm(
                VirtualMachine(
                    SUBSCRIPTION,
                    groups[index % 4],
                    f"testvm{index:02d}",
                    locations[index % 3],
                    tags=dict(TAGS),
                )
            )
        emulator.estate.add_vm(VirtualMachine(SUBSCRIPTION, "RG2", "web1", "westus", tags=dict(TAGS)))
    return emulator


def send(sdk_kwargs: dict[str, Any], version: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    graph = ResourceGraphClient(**sdk_kwargs, api_version=version)
    answer = graph.resources(
        QueryRequest.from_dict(body),
        cls=lambda response, _, __: (response.http_response.status_code, response.http_response.json()),
    )
    return cast(tuple[int, dict[str, Any]], answer)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", SERVED)
def test_resources_answer_has_the_example_shape(
    estate: Emulator, sdk_kwargs: dict[str, Any], version: str, name: str
) -> None:
    example = load_example(example_path(version, name))

    status, body = send(sdk_kwargs, version, example["parameters"]["query"])

    assert status == 200
    expected = example["responses"]["200"]["body"]
    assert_same_shape(expected, body, ignore=IGNORED.get(name, frozenset()))
    assert len(body["facets"]) == len(expected["facets"])
    for expected_facet, facet in zip(expected["facets"], body["facets"], strict=True):
        assert_same_shape(expected_facet, facet)


@pytest.mark.parametrize("version", VERSIONS)
def test_next_page_answer_has_the_example_shape(
    estate: Emulator, sdk_kwargs: dict[str, Any], version: str
) -> None:
    example = load_example(example_path(version, "ResourcesNextPageQuery.json"))
    request = example["parameters"]["query"]
    # The example's token is a placeholder; a real one comes from the first page of the same query.
    _, first_page = send(sdk_kwargs, version, {**request, "options": {"$top": 3}})
    request = {**request, "options": {"$skipToken": first_page["$skipToken"]}}

    status, body = send(sdk_kwargs, version, request)

    assert status == 200
    assert_same_shape(example["responses"]["200"]["body"], body)
    assert {row["id"] for row in body["data"]}.isdisjoint(row["id"] for row in first_page["data"])
