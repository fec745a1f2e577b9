"""Secure defaults of infra/ (issue 16, points 6-7): the secure webhook, least-privilege VM write rights,
the deployer's data roles, role assignments and alert rules that do not race what they depend on.

Templates are read with the parser and evaluator of tests/test_infra.py, with the parameters azd passes
from main.parameters.json for each azd environment.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import azure.functions as func
import pytest

from tests.test_infra import (
    ALERTS,
    AZD_ENVIRONMENT,
    DOCUMENTED_ROLE_IDS,
    INFRA,
    MAIN,
    SECURE_WEBHOOK,
    TENANT,
    WEBHOOK_APP_ID,
    WEBHOOK_APP_OBJECT_ID,
    BicepEvaluator,
    bicep_files,
    body,
    deployed_app_settings,
    main_evaluator,
    module_evaluator,
    module_path,
    parse_bicep,
    resources_of_type,
    role_assignments,
)

RBAC = INFRA / "app" / "rbac.bicep"
DEPLOYER = "2f3e4d5c-6b7a-4980-a1b2-c3d4e5f6a7b8"
FUNCTION_HOST = "func-backupwarden-test.azurewebsites.net"
# The existing site alerts.bicep reads its host name and id from.
FUNCTION_APP_RESOURCE = {
    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/func-backupwarden-test",
    "properties": {"defaultHostName": FUNCTION_HOST},
}
VM_GROUPS = "/subscriptions/s/resourceGroups/rg-app,/subscriptions/s/resourceGroups/rg-db"


def webhook_receivers(environment: Mapping[str, str]) -> list[dict[str, Any]]:
    """The action group's webhook receivers as ARM would write them for this azd environment."""
    alerts = module_evaluator(main_evaluator(environment), "alerts").with_locals(
        functionApp=FUNCTION_APP_RESOURCE
    )
    (group,) = resources_of_type(alerts.tree, "Microsoft.Insights/actionGroups").values()
    receivers: list[dict[str, Any]] = alerts.evaluate(group["properties"]["webhookReceivers"])
    return receivers


# --- the secure webhook ----------------------------------------------------------------------------
def test_the_action_group_calls_a_secure_webhook_by_default() -> None:
    (receiver,) = webhook_receivers({**AZD_ENVIRONMENT, **SECURE_WEBHOOK})
    assert receiver == {
        "name": "alert_webhook",
        "serviceUri": f"https://{FUNCTION_HOST}/api/alerts",
        "useCommonAlertSchema": True,
        "useAadAuth": True,
        "objectId": WEBHOOK_APP_OBJECT_ID,
        "identifierUri": f"api://{WEBHOOK_APP_ID}",
        "tenantId": TENANT,
    }


def test_without_an_entra_app_the_default_adds_no_webhook_rather_than_a_plain_one() -> None:
    assert webhook_receivers(AZD_ENVIRONMENT) == []
    assert webhook_receivers({**AZD_ENVIRONMENT, "BACKUPWARDEN_FUNCTIONS_DEPLOYED": "true"}) == []


@pytest.mark.parametrize("deployed", ["false", "true"])
@pytest.mark.parametrize("app", [{}, SECURE_WEBHOOK], ids=["no app", "app"])
def test_no_function_key_is_listed_in_the_default_path(app: Mapping[str, str], deployed: str) -> None:
    environment = {**AZD_ENVIRONMENT, **app, "BACKUPWARDEN_FUNCTIONS_DEPLOYED": deployed}
    written = json.dumps(webhook_receivers(environment))
    assert "listKeys" not in written and "code=" not in written


def test_the_function_key_webhook_is_an_explicit_opt_out() -> None:
    opt_out = {**AZD_ENVIRONMENT, "BACKUPWARDEN_WEBHOOK_AUTH": "functionKey"}
    assert webhook_receivers(opt_out) == []  # the key exists only once the code is deployed
    (receiver,) = webhook_receivers({**opt_out, **SECURE_WEBHOOK, "BACKUPWARDEN_FUNCTIONS_DEPLOYED": "true"})
    assert receiver["useAadAuth"] is False
    assert receiver["serviceUri"].startswith(f"https://{FUNCTION_HOST}/api/alerts?code=${{listKeys(")
    settings = deployed_app_settings({**opt_out, **SECURE_WEBHOOK})
    assert settings["BACKUPWARDEN_WEBHOOK_AUDIENCE"] == ""  # no token is checked: the key is the gate


def alert_webhook_auth_level() -> func.AuthLevel:
    """alert_webhook's auth level as the Functions host indexes it, with the current environment."""
    alerts = importlib.reload(importlib.import_module("functions.alerts"))
    app = importlib.reload(importlib.import_module("function_app")).app
    (webhook,) = [f for f in app.get_functions() if f.get_function_name() == "alert_webhook"]
    trigger = next(b for b in webhook.get_bindings() if b.type == "httpTrigger")
    assert alerts.webhook_auth_level() == trigger.auth_level
    level: func.AuthLevel = trigger.auth_level
    return level


@pytest.mark.parametrize(
    ("environment", "level"),
    [
        ({**AZD_ENVIRONMENT, **SECURE_WEBHOOK}, func.AuthLevel.ANONYMOUS),
        ({**AZD_ENVIRONMENT, "BACKUPWARDEN_WEBHOOK_AUTH": "functionKey"}, func.AuthLevel.FUNCTION),
        (AZD_ENVIRONMENT, func.AuthLevel.FUNCTION),
    ],
    ids=["secure webhook", "function key", "no webhook"],
)
def test_the_webhook_takes_a_key_exactly_when_no_token_is_checked(
    monkeypatch: pytest.MonkeyPatch, environment: Mapping[str, str], level: func.AuthLevel
) -> None:
    audience = deployed_app_settings(environment)["BACKUPWARDEN_WEBHOOK_AUDIENCE"]
    monkeypatch.setenv("BACKUPWARDEN_WEBHOOK_AUDIENCE", audience)
    try:
        assert alert_webhook_auth_level() == level
    finally:
        monkeypatch.delenv("BACKUPWARDEN_WEBHOOK_AUDIENCE")
        alert_webhook_auth_level()  # leave the modules as the other tests import them


# --- VM write rights ---------------------------------------------------------------------------------
def scope_params(environment: Mapping[str, str], *names: str) -> list[Any]:
    """What main.bicep passes its own subscription's scope.bicep, for these parameters."""
    passed = body(parse_bicep(MAIN)["modules"]["deploymentSubscription"]["config"])["params"]
    return [main_evaluator(environment).evaluate(passed[name]) for name in names]


def test_vm_write_rights_default_to_named_resource_groups_with_a_built_in_role() -> None:
    environment = {**AZD_ENVIRONMENT, "BACKUPWARDEN_VM_RESOURCE_GROUP_IDS": VM_GROUPS}
    assert scope_params(environment, "vmWriteScope", "vmWriteRole", "vmResourceGroupIds") == [
        "resourceGroups",
        "VirtualMachineContributor",
        VM_GROUPS.split(","),
    ]


def vm_groups_check(environment: Mapping[str, str]) -> tuple[bool, list[str]]:
    """Whether main.bicep deploys the check, and the groups it passes."""
    main = main_evaluator(environment)
    config = parse_bicep(MAIN)["modules"]["vmWriteGroupsCheck"]["config"]
    return main.evaluate(config["condition"]), main.evaluate(body(config)["params"]["vmResourceGroupIds"])


def test_resource_group_scope_without_groups_fails_the_deployment() -> None:
    check = parse_bicep(module_path(MAIN, parse_bicep(MAIN), "vmWriteGroupsCheck"))
    declared = check["parameters"]["vmResourceGroupIds"]
    assert declared["type"] == "array" and {"type": "min_length", "argument": 1} in declared["decorators"]
    assert vm_groups_check(AZD_ENVIRONMENT) == (True, [])  # ARM refuses an empty array here
    with_groups = {**AZD_ENVIRONMENT, "BACKUPWARDEN_VM_RESOURCE_GROUP_IDS": VM_GROUPS}
    assert vm_groups_check(with_groups) == (True, VM_GROUPS.split(","))
    for explicit in ("subscription", "none"):
        assert vm_groups_check({**AZD_ENVIRONMENT, "BACKUPWARDEN_VM_WRITE_SCOPE": explicit})[0] is False


# --- role assignments ----------------------------------------------------------------------------------
def test_every_role_assignment_names_its_principal_type() -> None:
    """ARM then trusts the type instead of looking up a principal created moments ago."""
    found = list(role_assignments())
    assert len(found) >= 12
    for path, name, config in found:
        properties = config["properties"]
        expected = (
            "deployerPrincipalType"
            if properties["principalId"] == "deployerPrincipalId"
            else "ServicePrincipal"
        )
        assert properties.get("principalType") == expected, f"{path.name}:{name}"
    declared = parse_bicep(RBAC)["parameters"]["deployerPrincipalType"]
    assert declared["default"] == "User"


def deployer_assignments(environment: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """(scope, role name, principal type) of each assignment rbac.bicep makes to the deployer."""
    main = main_evaluator(environment)
    passed = body(parse_bicep(MAIN)["modules"]["rbac"]["config"])["params"]
    rbac = BicepEvaluator(
        RBAC,
        {name: main.evaluate(passed[name]) for name in ("deployerPrincipalId", "deployerPrincipalType")}
        | {"principalId": "app", "storageAccountName": "st", "dataCollectionRuleName": "dcr"}
        | {"workspaceName": "log", "applicationInsightsName": "appi"},
    )
    role_names = {role_id: name for name, role_id in DOCUMENTED_ROLE_IDS.items()}
    for resource in parse_bicep(RBAC)["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = resource["config"]
        if "condition" in config and not rbac.evaluate(config["condition"]):
            continue
        properties = body(config)["properties"]
        if rbac.evaluate(properties["principalId"]) != DEPLOYER:
            continue
        role_id = rbac.evaluate(properties["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
        yield body(config)["scope"], role_names[role_id], rbac.evaluate(properties["principalType"])


def test_the_deployer_gets_exactly_the_data_roles_the_cli_needs() -> None:
    granted = sorted(deployer_assignments({**AZD_ENVIRONMENT, "AZURE_PRINCIPAL_ID": DEPLOYER}))
    assert granted == [
        ("dataCollectionRule", "Monitoring Metrics Publisher", "User"),
        ("storageAccount", "Storage Queue Data Contributor", "User"),
        ("storageAccount", "Storage Table Data Contributor", "User"),
        ("workspace", "Log Analytics Reader", "User"),
    ]
    pipeline = {**AZD_ENVIRONMENT, "AZURE_PRINCIPAL_ID": DEPLOYER, "AZURE_PRINCIPAL_TYPE": "ServicePrincipal"}
    assert {kind for _, _, kind in deployer_assignments(pipeline)} == {"ServicePrincipal"}


def test_the_deployer_gets_no_role_without_a_principal() -> None:
    assert list(deployer_assignments(AZD_ENVIRONMENT)) == []


# --- alert rules ---------------------------------------------------------------------------------------
def test_log_alert_rules_skip_the_query_validation_their_new_tables_would_fail() -> None:
    rules = [
        (path, name, config)
        for path in bicep_files()
        for name, config in resources_of_type(
            parse_bicep(path), "Microsoft.Insights/scheduledQueryRules"
        ).items()
    ]
    assert [(path, name) for path, name, _ in rules] == [(ALERTS, "rules")]
    for _, _, config in rules:
        assert config["properties"]["skipQueryValidation"] is True
