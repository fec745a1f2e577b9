"""PolicyRestrictionsCheck (backupwarden/adapters/azure/policy_restrictions.py) against the REST spec's
example answer (tests/spec_examples/README.md), served over HTTPS to the project's own ARM client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.policy_restrictions import PolicyRestrictionsCheck, request_body
from backupwarden.domain.preflight import (
    FieldRestriction,
    PolicyEvaluation,
    PreflightCheck,
    backup_pending_resources,
    check_enrolment,
)
from tests.preflight_fixtures import ENHANCED, HEALTHY_VM, ROOMY_VAULT
from tests.replay import Interaction, ReplayServer

EXAMPLE = Path(__file__).parent.parent / "spec_examples" / "policyinsights"
RG_SCOPE_EXAMPLE = EXAMPLE / "PolicyRestrictions_CheckAtResourceGroupScope.json"
ASSIGNMENTS = "/subscriptions/d8db6de6-2b96-46af-b825-07aef2033c0b/providers/microsoft.authorization"
VM_ID = (
    "/subscriptions/35ee058e-5fa0-414c-8145-3ebb8d09b6e2/resourceGroups/vmRg"
    "/providers/Microsoft.Compute/virtualMachines/vm1"
)


def spec_example(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, 200 body) of an x-ms-examples file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return document["parameters"], document["responses"]["200"]["body"]


def answer(
    status: int, body: dict[str, Any], path: str, headers: tuple[tuple[str, str], ...] = ()
) -> Interaction:
    return Interaction(
        method="POST",
        path=path,
        odata_filter=None,
        status=status,
        reason="",
        headers=(("Content-Type", "application/json"), *headers),
        body=json.dumps(body).encode("utf-8"),
        source=str(RG_SCOPE_EXAMPLE.name),
    )


def rg_path(parameters: dict[str, Any]) -> str:
    return (
        f"/subscriptions/{parameters['subscriptionId']}/resourceGroups/{parameters['resourceGroupName']}"
        "/providers/Microsoft.PolicyInsights/checkPolicyRestrictions"
    )


def test_parses_every_restriction_and_evaluation_of_the_resource_group_example(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    parameters, body = spec_example(RG_SCOPE_EXAMPLE)
    replay.play([answer(200, body, rg_path(parameters))])
    pending = backup_pending_resources(VM_ID, "eastus")[1]

    result = PolicyRestrictionsCheck(replay_clients.compute).check(
        parameters["subscriptionId"], pending, parameters["resourceGroupName"]
    )

    assert result.resource == pending
    assert result.field_restrictions == (
        FieldRestriction(
            "tags.newtag",
            "Required",
            "Deny",
            f"{ASSIGNMENTS}/policyAssignments/57DAC8A0",
            "tags.newtag is required",
        ),
        FieldRestriction(
            "tags.environment",
            "Required",
            "Deny",
            f"{ASSIGNMENTS}/policyAssignments/7EB1508A",
            "tags.environment is required",
            ("Prod", "Int", "Test"),
        ),
        FieldRestriction(
            "location",
            "Deny",
            "Deny",
            f"{ASSIGNMENTS}/policyAssignments/1563EBD3",
            "location must be one of the following: eastus, westus, westus2",
            ("west europe",),
        ),
        FieldRestriction(
            "location",
            "Deny",
            "Deny",
            f"{ASSIGNMENTS}/policyAssignments/5382A69D",
            "location must be one of the following: westus2",
            ("eastus", "westus"),
        ),
    )
    assert result.policy_evaluations == (
        PolicyEvaluation(
            "NonCompliant",
            "Deny",
            f"{ASSIGNMENTS}/policyAssignments/2FF66C37",
            f"{ASSIGNMENTS}/policyDefinitions/435CAE41",
        ),
    )
    [exchange] = replay.exchanges
    assert "api-version=2024-10-01" in exchange.target


def test_the_example_answer_refuses_enrolment_once_per_denying_assignment(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    parameters, body = spec_example(RG_SCOPE_EXAMPLE)
    replay.play([answer(200, body, rg_path(parameters))])
    pending = backup_pending_resources(VM_ID, "eastus")[1]
    result = PolicyRestrictionsCheck(replay_clients.compute).check(
        parameters["subscriptionId"], pending, parameters["resourceGroupName"]
    )

    refusals = check_enrolment(HEALTHY_VM, ENHANCED, ROOMY_VAULT, [result])

    # two Required-by-deny tags, two location denials, one non-compliant deny evaluation
    assert [r.check for r in refusals] == [PreflightCheck.DENIED_BY_POLICY] * 5
    for assignment in ("57DAC8A0", "7EB1508A", "1563EBD3", "5382A69D", "2FF66C37"):
        assert sum(f"policyAssignments/{assignment}" in r.reason for r in refusals) == 1


def test_a_throttled_check_is_retried_after_retry_after(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    parameters, body = spec_example(RG_SCOPE_EXAMPLE)
    throttled = {"error": {"code": "TooManyRequests", "message": "throttled"}}
    replay.play(
        [
            answer(429, throttled, rg_path(parameters), (("Retry-After", "0"),)),
            answer(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}, rg_path(parameters)),
            answer(200, body, rg_path(parameters)),
        ]
    )

    result = PolicyRestrictionsCheck(replay_clients.compute).check(
        parameters["subscriptionId"],
        backup_pending_resources(VM_ID, "eastus")[1],
        parameters["resourceGroupName"],
    )

    assert len(result.policy_evaluations) == 1
    assert len(replay.exchanges) == 3


def test_an_error_answer_raises_with_the_service_code(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    missing = {
        "error": {
            "code": "ResourceGroupNotFound",
            "message": "Resource group 'AzureBackupRG_eastus_1' could not be found.",
        }
    }
    path = (
        "/subscriptions/35ee058e-5fa0-414c-8145-3ebb8d09b6e2/resourceGroups/AzureBackupRG_eastus_1"
        "/providers/Microsoft.PolicyInsights/checkPolicyRestrictions"
    )
    replay.play([answer(404, missing, path)])

    with pytest.raises(AzureCallError) as raised:
        PolicyRestrictionsCheck(replay_clients.compute).check(
            "35ee058e-5fa0-414c-8145-3ebb8d09b6e2",
            backup_pending_resources(VM_ID, "eastus")[1],
            "AzureBackupRG_eastus_1",
        )

    assert (raised.value.code, raised.value.status) == ("ResourceGroupNotFound", 404)


def test_the_subscription_scope_check_posts_to_the_subscription(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    path = (
        "/subscriptions/35ee058e-5fa0-414c-8145-3ebb8d09b6e2"
        "/providers/Microsoft.PolicyInsights/checkPolicyRestrictions"
    )
    replay.play(
        [answer(200, {"fieldRestrictions": [], "contentEvaluationResult": {"policyEvaluations": []}}, path)]
    )

    result = PolicyRestrictionsCheck(replay_clients.compute).check(
        "35ee058e-5fa0-414c-8145-3ebb8d09b6e2", backup_pending_resources(VM_ID, "eastus")[0]
    )

    assert (result.field_restrictions, result.policy_evaluations) == ((), ())


def test_request_bodies_follow_the_spec_shape() -> None:
    """CheckRestrictionsRequest: resourceDetails.resourceContent required (checkPolicyRestrictions.json)."""
    group, collection = backup_pending_resources(VM_ID, "eastus")

    assert request_body(group) == {
        "resourceDetails": {
            "resourceContent": {
                "type": "Microsoft.Resources/resourceGroups",
                "location": "eastus",
                "name": "AzureBackupRG_eastus_1",
            }
        }
    }
    assert request_body(collection) == {
        "resourceDetails": {
            "resourceContent": {
                "type": "Microsoft.Compute/restorePointCollections",
                "location": "eastus",
                "properties": {"source": {"id": VM_ID}},
            }
        }
    }
