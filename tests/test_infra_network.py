"""infra/: the storage redundancy chosen by region, the Flex Consumption regions, and the private-network
mode (VNET_ENABLED), read through tests/test_infra.py's parser and evaluator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.test_infra import (
    AZD_ENVIRONMENT,
    INFRA,
    MAIN,
    SAMPLE_OUTPUTS,
    BicepEvaluator,
    CannotEvaluate,
    main_evaluator,
    module_evaluator,
    parse_bicep,
    resources_of_type,
)

NETWORK = INFRA / "app" / "network.bicep"
PRIVATE = {**AZD_ENVIRONMENT, "VNET_ENABLED": "true"}
STORAGE_SERVICES = ["blob", "queue", "table"]


def storage_account(environment: Mapping[str, str]) -> Mapping[str, Any]:
    storage = module_evaluator(main_evaluator(environment), "storage")
    (account,) = resources_of_type(storage.tree, "Microsoft.Storage/storageAccounts").values()
    evaluated: Mapping[str, Any] = storage.evaluate({"sku": account["sku"], **account["properties"]})
    return evaluated


def site_properties(environment: Mapping[str, str]) -> Mapping[str, Any]:
    app = module_evaluator(main_evaluator(environment), "functionApp")
    (site,) = resources_of_type(app.tree, "Microsoft.Web/sites").values()
    return {"virtualNetworkSubnetId": app.evaluate(site["properties"]["virtualNetworkSubnetId"])}


def network_deployed(environment: Mapping[str, str]) -> bool:
    main = main_evaluator(environment)
    return bool(main.evaluate(parse_bicep(MAIN)["modules"]["network"]["config"]["condition"]))


# --- redundancy by region ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("location", "sku"),
    [
        ("westeurope", "Standard_ZRS"),  # availability zones
        ("northcentralus", "Standard_LRS"),  # Flex Consumption, but no availability zones
        ("ukwest", "Standard_LRS"),
    ],
)
def test_storage_is_zone_redundant_only_where_the_region_has_zones(location: str, sku: str) -> None:
    account = storage_account({**AZD_ENVIRONMENT, "AZURE_LOCATION": location})
    assert account["sku"] == {"name": sku}


def test_storage_redundancy_can_be_chosen() -> None:
    environment = {**AZD_ENVIRONMENT, "BACKUPWARDEN_STORAGE_SKU": "Standard_LRS"}
    assert storage_account(environment)["sku"] == {"name": "Standard_LRS"}


def test_every_flex_region_without_zones_gets_lrs() -> None:
    location = parse_bicep(MAIN)["parameters"]["location"]
    (allowed,) = (d["argument"] for d in location["decorators"] if d["type"] == "allowed")
    skus = {
        region: storage_account({**AZD_ENVIRONMENT, "AZURE_LOCATION": region})["sku"] for region in allowed
    }
    zonal = {region for region, sku in skus.items() if sku == {"name": "Standard_ZRS"}}
    # Flex Consumption regions the regions list shows without availability zones (eastus2euap: a canary)
    assert set(allowed) - zonal == {
        "australiasoutheast", "eastus2euap", "northcentralus", "southindia", "ukwest", "westcentralus",
        "westus",
    }  # fmt: skip


# --- Flex Consumption regions ----------------------------------------------------------------------------
def test_location_is_one_of_the_flex_consumption_regions() -> None:
    assert main_evaluator(AZD_ENVIRONMENT).identifier("location") == "westeurope"
    for region in ("canadaeast", "westindia", "westeurope2"):  # no Flex Consumption there
        with pytest.raises(CannotEvaluate, match="location"):
            main_evaluator({**AZD_ENVIRONMENT, "AZURE_LOCATION": region})


def test_an_evaluator_refuses_a_value_outside_allowed() -> None:
    with pytest.raises(CannotEvaluate, match="storageSkuName"):
        BicepEvaluator(MAIN, {"storageSkuName": "Standard_GRS"})


# --- the private-network mode --------------------------------------------------------------------------
def test_by_default_there_is_no_network_and_storage_is_open_to_authenticated_callers() -> None:
    assert not network_deployed(AZD_ENVIRONMENT)
    account = storage_account(AZD_ENVIRONMENT)
    assert account["publicNetworkAccess"] == "Enabled"
    assert account["networkAcls"]["defaultAction"] == "Allow"
    assert account["allowSharedKeyAccess"] is False
    assert site_properties(AZD_ENVIRONMENT)["virtualNetworkSubnetId"] is None


def test_private_mode_closes_storage_to_public_networks_but_event_grid() -> None:
    account = storage_account(PRIVATE)
    acls = account["networkAcls"]
    assert acls["defaultAction"] == "Deny"
    assert (acls["ipRules"], acls["virtualNetworkRules"]) == ([], [])
    assert acls["bypass"] == "AzureServices"  # Event Grid's delivery and dead-lettering, a trusted service


def test_private_mode_integrates_the_app_with_the_delegated_subnet() -> None:
    assert network_deployed(PRIVATE)
    subnet_id = SAMPLE_OUTPUTS["network.outputs.APP_SUBNET_ID"]
    assert site_properties(PRIVATE)["virtualNetworkSubnetId"] == subnet_id
    network = module_evaluator(main_evaluator(PRIVATE), "network")
    (vnet,) = resources_of_type(network.tree, "Microsoft.Network/virtualNetworks").values()
    subnets = {s["name"]: s["properties"] for s in network.evaluate(vnet["properties"]["subnets"])}
    app_subnet = network.evaluate(network.tree["outputs"]["APP_SUBNET_ID"]["value"].rsplit("/", 1)[1])
    assert [d["properties"]["serviceName"] for d in subnets[app_subnet]["delegations"]] == [
        "Microsoft.App/environments"
    ]
    (endpoint_subnet,) = set(subnets) - {app_subnet}
    assert subnets[endpoint_subnet]["privateEndpointNetworkPolicies"] == "Disabled"


def looped(network: BicepEvaluator, resource_type: str) -> tuple[str, Mapping[str, Any], list[Any]]:
    """The one looped resource of a type: its symbolic name, body and the loop's items."""
    ((name, resource),) = (
        (name, r) for name, r in network.tree["resources"].items() if r["type"] == resource_type
    )
    loop = resource["config"]["loop_type"]
    return name, resource["config"]["config"], network.evaluate(loop["detail"]["array_name"])


def test_private_mode_has_an_endpoint_and_dns_zone_for_each_storage_service() -> None:
    network = module_evaluator(main_evaluator(PRIVATE), "network")
    endpoints_name, endpoint, services = looped(network, "Microsoft.Network/privateEndpoints")
    assert services == STORAGE_SERVICES
    storage_id = SAMPLE_OUTPUTS["storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID"]
    for service in services:
        (connection,) = network.with_locals(service=service).evaluate(
            endpoint["properties"]["privateLinkServiceConnections"]
        )
        assert connection["properties"] == {"privateLinkServiceId": storage_id, "groupIds": [service]}

    zones_name, zone, zone_services = looped(network, "Microsoft.Network/privateDnsZones")
    assert zone_services == services
    assert [network.with_locals(service=s).evaluate(zone["name"]) for s in services] == [
        f"privatelink.{service}.core.windows.net" for service in services
    ]
    _, link, link_services = looped(network, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert link_services == services
    assert link["parent"]["operator"]["operands"]["operand_1"] == zones_name
    assert link["properties"]["registrationEnabled"] is False

    # each endpoint registers in its own service's zone: same loop, same index
    _, group, group_services = looped(network, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert group_services == services
    parent = group["parent"]["operator"]
    (config,) = group["properties"]["privateDnsZoneConfigs"]
    zone_id = config["properties"]["privateDnsZoneId"]["operator"]["operands"]["operand_1"]["operator"]
    assert (parent["type"], parent["operands"]["operand_1"]) == ("index_accessor", endpoints_name)
    assert (zone_id["type"], zone_id["operands"]["operand_1"]) == ("index_accessor", zones_name)
    assert parent["operands"]["operand_2"] == zone_id["operands"]["operand_2"]


def test_private_mode_is_off_unless_azd_says_vnet_enabled() -> None:
    parameters = parse_bicep(MAIN)["parameters"]
    assert parameters["vnetEnabled"]["default"] is False
    assert not network_deployed({**AZD_ENVIRONMENT, "VNET_ENABLED": "false"})
    assert network_deployed(PRIVATE)
