"""The Event Grid wiring provisions in one pass, reuses a subscription's system topic, and lets several
azd environments share a subscription (issue 16, points 1-3), read with tests/test_infra.py's
parser and evaluator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from functions.new_vms import VM_EVENT_QUEUE
from tests.test_infra import (
    AZD_ENVIRONMENT,
    EVENTS,
    INFRA,
    MAIN,
    ROOT,
    SCOPE,
    SUBSCRIPTION,
    BicepEvaluator,
    body,
    expression,
    main_evaluator,
    module_path,
    parse_bicep,
    resources_of_type,
)

DELIVERY_ACCESS = INFRA / "app" / "event-delivery-access.bicep"
STORAGE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-bw/providers/Microsoft.Storage/storageAccounts/stbw"
)
EXISTING_TOPIC = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-platform-events"
    "/providers/Microsoft.EventGrid/systemTopics/platform-subscription-events"
)
OTHER_SUBSCRIPTION = "7c2d3e4f-5061-4b72-8c83-a4b5c6d7e8f9"
# Microsoft.Resources/deployments names: 1-64 characters
# (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftresources)
DEPLOYMENT_NAME = re.compile(r"^[-\w.()]{1,64}$")


def events_evaluator(**params: Any) -> BicepEvaluator:
    return BicepEvaluator(
        EVENTS,
        {
            "systemTopicName": "backupwarden-subscription-events",
            "storageSubscriptionId": SUBSCRIPTION,
            "storageResourceGroupName": "rg-bw",
            "storageAccountName": "stbw",
            "vmEventQueueName": "backupwarden-vm-events",
            "deadLetterContainerName": "vm-events-deadletter",
            **params,
        },
    )


def condition(evaluator: BicepEvaluator, name: str) -> bool:
    """Whether the file's resource `name` (a conditional one) is deployed."""
    return bool(evaluator.evaluate(evaluator.tree["resources"][name]["config"]["condition"]))


# --- 1. one-pass provisioning ------------------------------------------------------------------------
def test_events_go_to_the_vm_events_queue_with_the_topics_identity() -> None:
    tree = parse_bicep(EVENTS)
    properties = tree["variables"]["eventSubscription"]["value"]
    assert "destination" not in properties, "delivered with the topic's identity, not a key"
    delivery = properties["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}
    assert delivery["destination"]["endpointType"] == "StorageQueue"
    destination = delivery["destination"]["properties"]
    assert destination["resourceId"] == "storageAccountId"  # the app's account (resourceId of its parts)
    assert events_evaluator().evaluate(destination["queueName"]) == "backupwarden-vm-events"
    assert parse_bicep(MAIN)["variables"]["vmEventQueueName"]["value"] == VM_EVENT_QUEUE
    subscriptions = resources_of_type(tree, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert {config["properties"] for config in subscriptions.values()} == {"eventSubscription"}


def test_the_topics_identity_may_send_to_that_queue_and_nothing_more() -> None:
    tree = parse_bicep(EVENTS)
    access = tree["modules"]["deliveryAccess"]
    assert module_path(EVENTS, tree, "deliveryAccess") == DELIVERY_ACCESS
    params = body(access["config"])["params"]
    assert (params["topicPrincipalId"], params["vmEventQueueName"]) == (
        "topicPrincipalId",
        "vmEventQueueName",
    )
    for resource in resources_of_type(tree, "Microsoft.EventGrid/systemTopics/eventSubscriptions").values():
        assert "deliveryAccess" in resource["dependsOn"]
    (assignment,) = resources_of_type(
        parse_bicep(DELIVERY_ACCESS), "Microsoft.Authorization/roleAssignments"
    ).values()
    assert expression(assignment["scope"]) == "storageAccount::queueService::vmEventQueue"  # the queue only
    role = assignment["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert role == "storageQueueDataMessageSenderRoleId"  # its id: test_infra's documented role ids
    assert assignment["properties"]["principalType"] == "ServicePrincipal"


def test_no_event_subscription_waits_for_deployed_functions() -> None:
    for path in (EVENTS, SCOPE, DELIVERY_ACCESS):
        text = path.read_text()
        assert "functionsDeployed" not in text and "listKeys" not in text, path.name
    for module in ("deploymentSubscription", "additionalSubscriptions"):
        params = body(parse_bicep(MAIN)["modules"][module]["config"])["params"]
        assert "functionsDeployed" not in params and "functionAppResourceId" not in params, module


def test_no_hook_provisions_again() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    hooks = project.get("hooks") or {}
    scripts = [
        str(step.get("run", ""))
        for hook in hooks.values()
        for step in ([hook] if "run" in hook else hook.values())
    ]
    assert not any("azd provision" in script or "azd up" in script for script in scripts)
    assert not (INFRA / "hooks").exists()


# --- 2. an existing system topic -------------------------------------------------------------------------
def test_a_new_topic_is_created_when_none_is_given() -> None:
    events = events_evaluator()
    topics = resources_of_type(events.tree, "Microsoft.EventGrid/systemTopics")
    assert (condition(events, "newTopic"), condition(events, "existingTopic")) == (True, False)
    assert topics["newTopic"]["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    subscriptions = resources_of_type(events.tree, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert [name for name in subscriptions if condition(events, name)] == ["vmWritesToNewTopic"]


def test_the_existing_topic_is_reused_when_given() -> None:
    events = events_evaluator(existingSystemTopicId=EXISTING_TOPIC)
    topics = resources_of_type(events.tree, "Microsoft.EventGrid/systemTopics")
    assert (condition(events, "newTopic"), condition(events, "existingTopic")) == (False, True)
    assert events.evaluate(topics["existingTopic"]["name"]) == "platform-subscription-events"
    subscriptions = resources_of_type(events.tree, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert [name for name in subscriptions if condition(events, name)] == ["vmWritesToExistingTopic"]
    assert subscriptions["vmWritesToExistingTopic"]["parent"] == "existingTopic"


def scope_evaluator(existing_topic: str) -> BicepEvaluator:
    return BicepEvaluator(
        SCOPE,
        {
            "principalId": "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6",
            "location": "westeurope",
            "eventsResourceGroupName": "rg-bw-test-events",
            "existingSystemTopicId": existing_topic,
            "storageAccountResourceId": STORAGE_ID,
            "vmEventQueueName": "backupwarden-vm-events",
            "deadLetterContainerName": "vm-events-deadletter",
        },
    )


def test_the_deployment_passes_the_existing_topic_and_scope_deploys_into_its_group() -> None:
    given = main_evaluator({**AZD_ENVIRONMENT, "BACKUPWARDEN_EXISTING_SYSTEM_TOPIC_ID": EXISTING_TOPIC})
    params = body(given.tree["modules"]["deploymentSubscription"]["config"])["params"]
    assert given.evaluate(params["existingSystemTopicId"]) == EXISTING_TOPIC
    assert main_evaluator(AZD_ENVIRONMENT).evaluate(params["existingSystemTopicId"]) == ""

    for topic, group, creates_group in (
        (EXISTING_TOPIC, "rg-platform-events", False),
        ("", "rg-bw-test-events", True),
    ):
        scope = scope_evaluator(topic)
        events = body(scope.tree["modules"]["events"]["config"])
        assert events["params"]["existingSystemTopicId"] == "existingSystemTopicId"
        target = events["scope"]["function"]
        assert target["type"] == "resource_group"
        assert scope.evaluate(target["parameters"]["resource_group_name"]) == group
        assert condition(scope, "eventsGroup") is creates_group


def test_environments_sharing_a_topic_have_their_own_event_subscription_and_deployment() -> None:
    """The names hash what differs between environments: the app's storage and the app's identity."""
    name = parse_bicep(EVENTS)["variables"]["eventSubscriptionName"]["value"]
    assert name == "backupwarden-vm-writes-${uniqueString(storageAccountId, vmEventQueueName)}"
    events_name = body(parse_bicep(SCOPE)["modules"]["events"]["config"])["name"]
    assert events_name == "backupwarden-events-${uniqueString(subscription().id, principalId)}"


# --- 3. nested deployment names ------------------------------------------------------------------------
def scope_deployment_names(environment: Mapping[str, str]) -> list[str]:
    main = main_evaluator({**environment, "BACKUPWARDEN_ADDITIONAL_SUBSCRIPTIONS": OTHER_SUBSCRIPTION})
    modules = main.tree["modules"]
    this = main.evaluate(body(modules["deploymentSubscription"]["config"])["name"])
    loop = modules["additionalSubscriptions"]["config"]
    item = loop["loop_type"]["detail"]["item_name"]
    others = [
        main.with_locals(**{item: subscription}).evaluate(body(loop["config"])["name"])
        for subscription in main.evaluate(loop["loop_type"]["detail"]["array_name"])
    ]
    return [this, *others]


def test_nested_deployment_names_differ_per_environment_and_fit_the_limit() -> None:
    first = scope_deployment_names(AZD_ENVIRONMENT)
    second = scope_deployment_names({**AZD_ENVIRONMENT, "AZURE_ENV_NAME": "bw-test-2"})
    elsewhere = scope_deployment_names({**AZD_ENVIRONMENT, "AZURE_LOCATION": "northeurope"})
    longest = scope_deployment_names({**AZD_ENVIRONMENT, "AZURE_ENV_NAME": "e" * 64})
    assert len(set(first)) == 2
    assert not set(first) & set(second) and not set(first) & set(elsewhere)
    for name in first + second + elsewhere + longest:
        assert DEPLOYMENT_NAME.match(name), name
    assert first[0].endswith(SUBSCRIPTION) and first[1].endswith(OTHER_SUBSCRIPTION)
