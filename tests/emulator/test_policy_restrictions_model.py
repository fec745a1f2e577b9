"""The emulator's checkPolicyRestrictions (emulator/policyinsights/) through the app's own adapter
(PolicyRestrictionsCheck) and the real ARM pipeline. Expected shapes: REST spec Microsoft.PolicyInsights
stable/2024-10-01 checkPolicyRestrictions.json and its examples (tests/spec_examples/policyinsights/)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.policy_restrictions import PolicyRestrictionsCheck
from backupwarden.domain.preflight import (
    RESTORE_POINT_COLLECTION_TYPE,
    PreflightCheck,
    backup_pending_resources,
    check_enrolment,
)
from emulator import Emulator
from emulator.policyinsights.models import (
    DenyPolicy,
    PolicyInsightsBackend,
    RestrictionsRequest,
)
from emulator.scenario import ScenarioError
from tests.preflight_fixtures import ENHANCED, HEALTHY_VM, ROOMY_VAULT

SUB = "22222222-2222-4222-8222-222222222222"
OTHER_SUB = "33333333-3333-4333-8333-333333333333"
DENIED_RG = "rg-locked"
OPEN_RG = "rg-open"
ASSIGNMENT = (
    f"/subscriptions/{SUB}/resourceGroups/{DENIED_RG}/providers/Microsoft.Authorization/policyAssignments"
)
EMPTY = {"fieldRestrictions": [], "contentEvaluationResult": {"policyEvaluations": []}}
OPERATION = "providers/Microsoft.PolicyInsights/checkPolicyRestrictions"


def scenario(deny_policies: list[dict[str, Any]]) -> dict[str, Any]:
    vms = [
        {"name": "locked-01", "resource_group": DENIED_RG, "location": "westeurope"},
        {"name": "open-01", "resource_group": OPEN_RG, "location": "westeurope"},
    ]
    return {
        "clock": {"scale": 0},
        "subscriptions": [
            {"id": SUB, "vms": vms},
            {
                "id": OTHER_SUB,
                "vms": [{"name": "other-01", "resource_group": OPEN_RG, "location": "westeurope"}],
            },
        ],
        "deny_policies": deny_policies,
    }


DENY_RESTORE_POINTS = {
    "scope": f"/subscriptions/{SUB}/resourceGroups/{DENIED_RG}",
    "resource_type": RESTORE_POINT_COLLECTION_TYPE,
    "name": "deny-restore-points",
}


@pytest.fixture
def arm(sdk_kwargs: dict[str, Any]) -> dict[str, ComputeManagementClient]:
    return {sub: ComputeManagementClient(subscription_id=sub, **sdk_kwargs) for sub in (SUB, OTHER_SUB)}


@pytest.fixture
def check(arm: dict[str, ComputeManagementClient]) -> PolicyRestrictionsCheck:
    return PolicyRestrictionsCheck(lambda subscription_id: arm[subscription_id])


def vm_id(resource_group: str, name: str) -> str:
    group = f"/subscriptions/{SUB}/resourceGroups/{resource_group}"
    return f"{group}/providers/Microsoft.Compute/virtualMachines/{name}"


def post(arm: ComputeManagementClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = HttpRequest(
        "POST",
        path,
        params={"api-version": "2024-10-01"},
        content=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    response = arm.send_request(request)
    return response.status_code, response.json()


# --- through the app's adapter -------------------------------------------------------------------
def test_a_denied_resource_group_refuses_enrolment(
    emulator: Emulator, check: PolicyRestrictionsCheck
) -> None:
    emulator.load_scenario(scenario([DENY_RESTORE_POINTS]))
    collection = backup_pending_resources(vm_id(DENIED_RG, "locked-01"), "westeurope")[1]

    answer = check.check(SUB, collection, DENIED_RG)
    refusals = check_enrolment(HEALTHY_VM, ENHANCED, ROOMY_VAULT, [answer])

    assert [r.check for r in refusals] == [PreflightCheck.DENIED_BY_POLICY]
    assert f"{ASSIGNMENT}/deny-restore-points" in refusals[0].reason
    [evaluation] = answer.policy_evaluations
    assert (evaluation.evaluation_result, evaluation.policy_effect) == ("NonCompliant", "Deny")
    assert evaluation.policy_definition_id.endswith("/6c112d4e-5bc7-47ae-a041-ea2d9dccd749")
    assert answer.field_restrictions == ()


def test_an_allowed_resource_group_refuses_nothing(
    emulator: Emulator, check: PolicyRestrictionsCheck
) -> None:
    emulator.load_scenario(scenario([DENY_RESTORE_POINTS]))
    pending = backup_pending_resources(vm_id(OPEN_RG, "open-01"), "westeurope")

    answers = [check.check(SUB, pending[1], OPEN_RG), check.check(SUB, pending[0])]

    assert check_enrolment(HEALTHY_VM, ENHANCED, ROOMY_VAULT, answers) == []
    assert all((a.field_restrictions, a.policy_evaluations) == ((), ()) for a in answers)


def test_a_subscription_policy_denies_in_every_group_of_that_subscription_only(
    emulator: Emulator, check: PolicyRestrictionsCheck
) -> None:
    deny_groups = {
        "scope": f"/subscriptions/{SUB}",
        "resource_type": "Microsoft.Resources/resourceGroups",
        "name": "no-rgs",
    }
    emulator.load_scenario(scenario([deny_groups]))
    group = backup_pending_resources(vm_id(OPEN_RG, "open-01"), "westeurope")[0]

    at_subscription = check.check(SUB, group)
    in_group = check.check(SUB, group, OPEN_RG)
    elsewhere = check.check(OTHER_SUB, group)

    expected = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/policyAssignments/no-rgs"
    assert [e.policy_assignment_id for e in at_subscription.policy_evaluations] == [expected]
    assert [e.policy_assignment_id for e in in_group.policy_evaluations] == [expected]
    assert elsewhere.policy_evaluations == ()


def test_a_missing_resource_group_or_subscription_is_not_found(
    emulator: Emulator, check: PolicyRestrictionsCheck, arm: dict[str, ComputeManagementClient]
) -> None:
    emulator.load_scenario(scenario([DENY_RESTORE_POINTS]))
    collection = backup_pending_resources(vm_id(OPEN_RG, "open-01"), "westeurope")[1]

    with pytest.raises(AzureCallError) as no_group:
        check.check(SUB, collection, "AzureBackupRG_westeurope_1")
    with pytest.raises(AzureCallError) as no_subscription:
        PolicyRestrictionsCheck(lambda _: arm[SUB]).check("44444444-4444-4444-8444-444444444444", collection)

    assert (no_group.value.code, no_group.value.status) == ("ResourceGroupNotFound", 404)
    assert (no_subscription.value.code, no_subscription.value.status) == ("SubscriptionNotFound", 404)


# --- the wire shape -------------------------------------------------------------------------------
def test_no_matching_policy_answers_the_empty_result(
    emulator: Emulator, arm: dict[str, ComputeManagementClient]
) -> None:
    emulator.load_scenario(scenario([DENY_RESTORE_POINTS]))
    body = {
        "resourceDetails": {"resourceContent": {"type": "Microsoft.Compute/disks", "location": "westeurope"}}
    }

    status, answer = post(arm[SUB], f"/subscriptions/{SUB}/resourceGroups/{DENIED_RG}/{OPERATION}", body)

    assert (status, answer) == (200, EMPTY)


def test_a_type_pending_field_answers_a_deny_field_restriction(
    emulator: Emulator, arm: dict[str, ComputeManagementClient]
) -> None:
    emulator.load_scenario(scenario([DENY_RESTORE_POINTS]))
    body = {
        "resourceDetails": {"resourceContent": {"location": "westeurope"}},
        "pendingFields": [{"field": "type"}, {"field": "location", "values": ["westeurope"]}],
    }

    status, answer = post(arm[SUB], f"/subscriptions/{SUB}/resourceGroups/{DENIED_RG}/{OPERATION}", body)

    assert status == 200
    assert answer["contentEvaluationResult"] == {"policyEvaluations": []}
    [restricted] = answer["fieldRestrictions"]
    assert restricted["field"] == "type"
    [restriction] = restricted["restrictions"]
    assert (restriction["result"], restriction["policyEffect"], restriction["values"]) == (
        "Deny",
        "Deny",
        [RESTORE_POINT_COLLECTION_TYPE],
    )
    assert restriction["policy"]["policyAssignmentId"] == f"{ASSIGNMENT}/deny-restore-points"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"resourceDetails": "x"},
        {"resourceDetails": {}},
        {"resourceDetails": {"resourceContent": []}},
        {"resourceDetails": {"resourceContent": {"type": 5}}},
        {"resourceDetails": {"resourceContent": {}, "apiVersion": 1}},
        {"resourceDetails": {"resourceContent": {}}, "pendingFields": {"field": "type"}},
        {"resourceDetails": {"resourceContent": {}}, "pendingFields": [{"values": ["a"]}]},
        {"resourceDetails": {"resourceContent": {}}, "pendingFields": [{"field": "type", "values": [1]}]},
        {"resourceDetails": {"resourceContent": {}}, "includeAuditEffect": "yes"},
    ],
)
def test_a_malformed_request_is_a_400_in_the_service_error_shape(
    emulator: Emulator, arm: dict[str, ComputeManagementClient], body: Any
) -> None:
    emulator.load_scenario(scenario([]))

    status, answer = post(arm[SUB], f"/subscriptions/{SUB}/{OPERATION}", body)

    assert status == 400
    assert answer["error"]["code"] == "InvalidRequestContent"
    assert answer["error"]["message"]


@pytest.mark.parametrize(
    ("policy", "names"),
    [
        ({"scope": "/subscriptions", "resource_type": "A.B/c", "name": "n"}, "scope"),
        ({"scope": f"/subscriptions/{SUB}", "resource_type": "restorePoints", "name": "n"}, "resource_type"),
        ({"scope": f"/subscriptions/{SUB}", "resource_type": "A.B/c", "name": "a/b"}, "name"),
        ({"scope": f"/subscriptions/{SUB}", "resource_type": "A.B/c"}, "missing keys ['name']"),
        (
            {"scope": f"/subscriptions/{SUB}", "resource_type": "A.B/c", "name": "n", "effect": "audit"},
            "effect",
        ),
    ],
)
def test_a_bad_deny_policy_fails_the_scenario_load(
    emulator: Emulator, policy: dict[str, Any], names: str
) -> None:
    with pytest.raises(ScenarioError, match="deny_policies") as raised:
        emulator.load_scenario(scenario([policy]))

    assert names in str(raised.value)


# --- the rule -------------------------------------------------------------------------------------
SCOPES = [
    f"/subscriptions/{SUB}",
    f"/subscriptions/{SUB}/resourceGroups/{DENIED_RG}",
    f"/subscriptions/{SUB}/resourceGroups/{OPEN_RG}",
    f"/subscriptions/{OTHER_SUB}",
    f"/subscriptions/{OTHER_SUB}/resourceGroups/{OPEN_RG}",
]
TYPES = [RESTORE_POINT_COLLECTION_TYPE, "Microsoft.Resources/resourceGroups", "Microsoft.Compute/disks"]


def _within(asked: str, assigned: str) -> bool:
    return asked.lower() == assigned.lower() or asked.lower().startswith(
        assigned.lower() + "/resourcegroups/"
    )


@pytest.fixture(scope="module")
def rules_backend() -> PolicyInsightsBackend:
    """An emulator of its own, not served: the rule is checked without HTTP, one estate for all examples."""
    emulator = Emulator()
    emulator.load_scenario(scenario([]))
    return emulator.backend(PolicyInsightsBackend)


@settings(max_examples=250, deadline=None)
@given(
    policies=st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(TYPES)), max_size=4),
    asked_scope=st.sampled_from(SCOPES),
    asked_type=st.sampled_from(TYPES),
    shout=st.booleans(),
)
def test_a_check_is_denied_exactly_by_the_assignments_above_it_for_its_type(
    rules_backend: PolicyInsightsBackend,
    policies: list[tuple[str, str]],
    asked_scope: str,
    asked_type: str,
    shout: bool,
) -> None:
    rules_backend.deny_policies = [
        DenyPolicy(scope, kind, f"p{i}") for i, (scope, kind) in enumerate(policies)
    ]
    subscription_id = asked_scope.split("/")[2]
    group = asked_scope.split("/")[4] if "/resourceGroups/" in asked_scope else None
    # ARM compares types and ids case-insensitively
    asked = asked_type.upper() if shout else asked_type

    answer = rules_backend.check(subscription_id, group, RestrictionsRequest(asked))

    denied_by = {
        e["policyInfo"]["policyAssignmentId"].rsplit("/", 1)[1]
        for e in answer["contentEvaluationResult"]["policyEvaluations"]
    }
    expected = {
        f"p{i}"
        for i, (scope, kind) in enumerate(policies)
        if _within(asked_scope, scope) and kind == asked_type
    }
    assert denied_by == expected
    assert answer["fieldRestrictions"] == []
