"""What Azure Policy would deny: the deny policies a scenario assigns, checked as checkPolicyRestrictions
answers (REST spec Microsoft.PolicyInsights stable/2024-10-01, checkPolicyRestrictions.json).

A scenario's `deny_policies` assigns the built-in "Not allowed resource types" policy at a subscription or
a resource group. A check at that scope, or below it, for a resource of a denied type answers one
NonCompliant evaluation with effect Deny in `contentEvaluationResult.policyEvaluations` (shaped as the
spec's PolicyRestrictions_CheckAtResourceGroupScope example); a `type` pending field also answers a Deny
field restriction naming the type (as PolicyRestrictions_CheckAtManagementGroupScope restricts `type`).
Anything else answers the empty result. No other policy effect is emulated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.compute.exceptions import ResourceGroupNotFound
from emulator.subscriptions.models import require_subscription, resource_scopes

if TYPE_CHECKING:
    from emulator.core.app import Emulator

# The built-in "Not allowed resource types" definition (parameter listOfResourceTypesNotAllowed).
NOT_ALLOWED_TYPES_DEFINITION = (
    "/providers/Microsoft.Authorization/policyDefinitions/6c112d4e-5bc7-47ae-a041-ea2d9dccd749"
)
DENY_POLICY_KEYS = {"scope", "resource_type", "name"}
_SCOPE = re.compile(r"^/subscriptions/[^/]+(/resourceGroups/[^/]+)?$", re.IGNORECASE)
_RESOURCE_TYPE = re.compile(r"^[A-Za-z0-9.]+(/[A-Za-z0-9]+)+$")


@dataclass(frozen=True)
class DenyPolicy:
    scope: str  # /subscriptions/{id} or /subscriptions/{id}/resourceGroups/{name}
    resource_type: str  # e.g. Microsoft.Compute/restorePointCollections
    name: str  # the assignment's name

    @property
    def assignment_id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Authorization/policyAssignments/{self.name}"

    def applies_at(self, scope: str) -> bool:
        """An assignment applies to its scope and to every scope below it."""
        own, asked = self.scope.lower(), scope.lower()
        return asked == own or asked.startswith(own + "/")

    def denies(self, resource_type: str) -> bool:
        return resource_type.lower() == self.resource_type.lower()


@dataclass(frozen=True)
class PendingField:
    field: str
    values: tuple[str, ...] | None  # None: the caller named no candidate values


@dataclass(frozen=True)
class RestrictionsRequest:
    resource_type: str  # resourceDetails.resourceContent.type; "" when the content has none
    pending_fields: tuple[PendingField, ...] = ()


class PolicyInsightsBackend:
    scenario_section = "deny_policies"  # the scenario loader hands that section to `configure`

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.deny_policies: list[DenyPolicy] = []

    def configure(self, section: Any) -> None:
        """Apply a scenario's `deny_policies: [{scope, resource_type, name}]`."""
        if not isinstance(section, list):
            raise ValueError("deny_policies must be a list")
        self.deny_policies = [_deny_policy(raw, f"deny_policies[{i}]") for i, raw in enumerate(section)]

    def check(
        self, subscription_id: str, resource_group: str | None, request: RestrictionsRequest
    ) -> dict[str, Any]:
        """The CheckRestrictionsResult for a resource to be created at the scope."""
        with self.emulator.lock:
            estate = self.emulator.estate
            require_subscription(estate, subscription_id)
            scope = f"/subscriptions/{subscription_id}"
            if resource_group is not None:
                wanted = (subscription_id.lower(), resource_group.lower())
                if all((s.lower(), g.lower()) != wanted for s, g in resource_scopes(estate)):
                    raise ResourceGroupNotFound(resource_group)
                scope += f"/resourceGroups/{resource_group}"
            applicable = [p for p in self.deny_policies if p.applies_at(scope)]
        denying = [p for p in applicable if request.resource_type and p.denies(request.resource_type)]
        return {
            "fieldRestrictions": _type_restrictions(applicable, request.pending_fields),
            "contentEvaluationResult": {
                "policyEvaluations": [_evaluation(p, request.resource_type) for p in denying]
            },
        }


def _type_restrictions(
    applicable: list[DenyPolicy], pending: tuple[PendingField, ...]
) -> list[dict[str, Any]]:
    restrictions: list[dict[str, Any]] = []
    for field in pending:
        if field.field.lower() != "type":
            continue
        candidates = None if field.values is None else {v.lower() for v in field.values}
        found = [
            _restriction(p) for p in applicable if candidates is None or p.resource_type.lower() in candidates
        ]
        if found:
            restrictions.append({"field": field.field, "restrictions": found})
    return restrictions


def _restriction(policy: DenyPolicy) -> dict[str, Any]:
    return {
        "result": "Deny",
        "values": [policy.resource_type],
        "policy": _policy_reference(policy),
        "policyEffect": "Deny",
        "reason": f"type {policy.resource_type} is not allowed",
    }


def _evaluation(policy: DenyPolicy, resource_type: str) -> dict[str, Any]:
    return {
        "policyInfo": _policy_reference(policy),
        "evaluationResult": "NonCompliant",
        "evaluationDetails": {
            "evaluatedExpressions": [
                {
                    "result": "True",
                    "expressionKind": "field",
                    "expression": "type",
                    "path": "type",
                    "expressionValue": resource_type.lower(),
                    "targetValue": [policy.resource_type],
                    "operator": "in",
                }
            ]
        },
        "effectDetails": {"policyEffect": "Deny"},
    }


def _policy_reference(policy: DenyPolicy) -> dict[str, str]:
    return {"policyDefinitionId": NOT_ALLOWED_TYPES_DEFINITION, "policyAssignmentId": policy.assignment_id}


def _deny_policy(raw: Any, where: str) -> DenyPolicy:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping")
    unknown = sorted(set(raw) - DENY_POLICY_KEYS)
    missing = sorted(DENY_POLICY_KEYS - set(raw))
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    scope, resource_type, name = (str(raw[key]) for key in ("scope", "resource_type", "name"))
    if not _SCOPE.match(scope):
        raise ValueError(f"{where}.scope '{scope}' is neither /subscriptions/{{id}} nor a resource group id")
    if not _RESOURCE_TYPE.match(resource_type):
        raise ValueError(f"{where}.resource_type '{resource_type}' is not like Microsoft.Compute/disks")
    if not name.strip() or "/" in name:
        raise ValueError(f"{where}.name '{name}' must be a non-empty assignment name without '/'")
    return DenyPolicy(scope.rstrip("/"), resource_type, name)
