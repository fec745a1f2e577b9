"""The subscriptions a run covers: the configured ones, or every enabled one the identity can see."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from azure.core.exceptions import AzureError
from azure.mgmt.resource.subscriptions import SubscriptionClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.arm_ids import arm_key


class SubscriptionScope:
    """Asked once per run: the configured subscriptions as given, else a list call to ARM.

    `client` is called only when nothing is configured, so a configured scope never builds the
    subscriptions client.
    """

    def __init__(self, configured: Sequence[str], client: Callable[[], SubscriptionClient]) -> None:
        self._configured = list(configured)
        self._client = client

    def __call__(self) -> list[str]:
        if self._configured:
            return list(self._configured)
        try:
            return sorted(
                arm_key(str(sub.subscription_id))
                for sub in self._client().subscriptions.list()
                if (sub.state or "Enabled") == "Enabled"  # a str enum: compare, never str() it
            )
        except AzureError as exc:
            raise AzureCallError.from_sdk("list subscriptions", exc) from exc
