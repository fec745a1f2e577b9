"""Azure Policy's checkPolicyRestrictions: would a policy deny what a VM's backup creates?

POST {arm}/subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.PolicyInsights/
checkPolicyRestrictions?api-version=2024-10-01, body `resourceDetails` (+ `pendingFields`), answer
`fieldRestrictions` and `contentEvaluationResult.policyEvaluations` (REST spec
specification/policyinsights/resource-manager/Microsoft.PolicyInsights/stable/2024-10-01/
checkPolicyRestrictions.json in Azure/azure-rest-api-specs). The check is a read: it creates nothing.

The call goes through an ARM client the app already has (the compute client of the subscription,
`send_request`) rather than adding azure-mgmt-policyinsights for one operation: same endpoint, token
audience, retries and pacing as every other ARM request (clients.py). ARM answers a throttled POST
with 429 and `Retry-After`, which azure-core retries; 500/503/504 are retried for POST too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core.exceptions import ARMErrorFormat

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.preflight import (
    FieldRestriction,
    PendingResource,
    PolicyEvaluation,
    PolicyRestrictions,
)

API_VERSION = "2024-10-01"
STEP = "check policy restrictions"


class PolicyRestrictionsCheck:
    def __init__(self, arm_for: Callable[[str], ComputeManagementClient]) -> None:
        self._arm_for = arm_for

    def check(
        self, subscription_id: str, resource: PendingResource, resource_group: str | None = None
    ) -> PolicyRestrictions:
        """What Azure Policy would do to `resource` created in the subscription (or the resource group,
        when it exists already: the check fails on a resource group that does not)."""
        scope = f"/subscriptions/{subscription_id}"
        if resource_group:
            scope += f"/resourceGroups/{resource_group}"
        request = HttpRequest(
            "POST",
            f"{scope}/providers/Microsoft.PolicyInsights/checkPolicyRestrictions",
            params={"api-version": API_VERSION},
            json=request_body(resource),
        )
        try:
            response = self._arm_for(subscription_id).send_request(request)
            if response.status_code != 200:
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            answer = response.json()
        except AzureError as exc:
            raise AzureCallError.from_sdk(STEP, exc) from exc
        except ValueError as exc:  # a 200 whose body is not JSON
            raise AzureCallError(STEP, "UnexpectedResponse", str(exc), 200) from exc
        return parse_answer(resource, answer)


def request_body(resource: PendingResource) -> dict[str, Any]:
    content: dict[str, Any] = {"type": resource.resource_type, "location": resource.location}
    if resource.name:
        content["name"] = resource.name
    for path, value in resource.properties:
        node = content.setdefault("properties", {})
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    details: dict[str, Any] = {"resourceContent": content}
    if resource.api_version:
        details["apiVersion"] = resource.api_version
    return {"resourceDetails": details}


def parse_answer(resource: PendingResource, answer: dict[str, Any]) -> PolicyRestrictions:
    fields = tuple(
        FieldRestriction(
            field=str(entry.get("field") or ""),
            result=str(restriction.get("result") or ""),
            policy_effect=str(restriction.get("policyEffect") or ""),
            policy_assignment_id=str((restriction.get("policy") or {}).get("policyAssignmentId") or ""),
            reason=str(restriction.get("reason") or ""),
            values=tuple(str(v) for v in restriction.get("values") or ()),
        )
        for entry in answer.get("fieldRestrictions") or ()
        for restriction in entry.get("restrictions") or ()
    )
    evaluations = tuple(
        PolicyEvaluation(
            evaluation_result=str(evaluation.get("evaluationResult") or ""),
            policy_effect=str((evaluation.get("effectDetails") or {}).get("policyEffect") or ""),
            policy_assignment_id=str((evaluation.get("policyInfo") or {}).get("policyAssignmentId") or ""),
            policy_definition_id=str((evaluation.get("policyInfo") or {}).get("policyDefinitionId") or ""),
        )
        for evaluation in (answer.get("contentEvaluationResult") or {}).get("policyEvaluations") or ()
    )
    return PolicyRestrictions(resource, fields, evaluations)
