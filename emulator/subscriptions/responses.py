"""Thin handlers for `GET /subscriptions` and `GET /subscriptions/{subscriptionId}`."""

from __future__ import annotations

from typing import Any

from emulator.core.app import Call, Reply
from emulator.core.paging import next_link, skip_token
from emulator.estate import Subscription
from emulator.subscriptions.models import SubscriptionsBackend


def get_subscription(call: Call) -> Reply:
    subscription = call.backend(SubscriptionsBackend).get(call.params["subscriptionId"])
    return Reply(200, subscription_resource(subscription))


def list_subscriptions(call: Call) -> Reply:
    subscriptions, total, token = call.backend(SubscriptionsBackend).list_page(skip_token(call.query))
    body: dict[str, Any] = {
        "value": [subscription_resource(s) for s in subscriptions],
        "count": {"type": "Total", "value": total},
    }
    link = next_link(call.base_url, call.path, call.query, token)
    if link:
        body["nextLink"] = link
    return Reply(200, body)


def subscription_resource(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription.subscription_id,
        "tenantId": subscription.tenant_id,
        "displayName": subscription.display_name,
        "state": subscription.state,
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }
