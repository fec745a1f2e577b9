"""Routes of Azure Policy's checkPolicyRestrictions (REST spec Microsoft.PolicyInsights stable/2024-10-01,
checkPolicyRestrictions.json: PolicyRestrictions_CheckAtSubscriptionScope and _CheckAtResourceGroupScope)."""

from __future__ import annotations

from emulator.core.router import Route
from emulator.policyinsights import responses as r

API_VERSIONS = frozenset({"2024-10-01"})  # what PolicyRestrictionsCheck sends (policy_restrictions.py)
_OPERATION = "providers/Microsoft.PolicyInsights/checkPolicyRestrictions"


def routes() -> list[Route]:
    # ARM counts a POST against the subscription's write bucket, though the check creates nothing.
    return [
        Route(
            "POST",
            f"/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/{_OPERATION}",
            r.check_at_resource_group,
            API_VERSIONS,
            kind="write",
        ),
        Route(
            "POST",
            f"/subscriptions/{{subscriptionId}}/{_OPERATION}",
            r.check_at_subscription,
            API_VERSIONS,
            kind="write",
        ),
    ]
