"""Which subscriptions exist: those declared in the estate, plus any a VM or vault lives in.

Tests and scenarios may add VMs without declaring their subscription; ARM would not have
such VMs, so those subscriptions exist implicitly (with a made-up display name). A VM created
through the compute backend declares its subscription, so it outlives the VM.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from emulator.core.paging import Page, SnapshotPager
from emulator.estate import Estate, Subscription
from emulator.subscriptions.exceptions import SubscriptionNotFound

if TYPE_CHECKING:
    from emulator.core.app import Emulator

DEFAULT_PAGE_SIZE = 100


def known_subscriptions(estate: Estate) -> dict[str, Subscription]:
    """Lower-case subscription id -> subscription, declared or implicit."""
    found = dict(estate.subscriptions)
    for subscription_id, _ in resource_scopes(estate):
        if subscription_id.lower() not in found:
            found[subscription_id.lower()] = _implicit(subscription_id)
    return found


def resource_scopes(estate: Estate) -> Iterator[tuple[str, str]]:
    """(subscription id, resource group) of every VM and vault."""
    for vm in estate.vms.values():
        yield vm.subscription_id, vm.resource_group
    for vault in estate.vaults.values():
        yield vault.subscription_id, vault.resource_group


def declare_subscription(estate: Estate, subscription_id: str) -> Subscription:
    """The subscription, declared now if it was only implicit (so it outlives its last resource)."""
    key = subscription_id.lower()
    if key not in estate.subscriptions:
        estate.add_subscription(_implicit(subscription_id))
    return estate.subscriptions[key]


def _implicit(subscription_id: str) -> Subscription:
    return Subscription(subscription_id, f"Subscription {subscription_id}")


def subscription_exists(estate: Estate, subscription_id: str) -> bool:
    key = subscription_id.lower()
    if key in estate.subscriptions:
        return True
    return any(subscription_id.lower() == key for subscription_id, _ in resource_scopes(estate))


def require_subscription(estate: Estate, subscription_id: str) -> None:
    if not subscription_exists(estate, subscription_id):
        raise SubscriptionNotFound(subscription_id)


class SubscriptionsBackend:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.page_size = DEFAULT_PAGE_SIZE
        self._pager = SnapshotPager()

    def get(self, subscription_id: str) -> Subscription:
        with self.emulator.lock:
            found = known_subscriptions(self.emulator.estate).get(subscription_id.lower())
            if found is None:
                raise SubscriptionNotFound(subscription_id)
            return found

    def list_page(self, token: str | None) -> tuple[list[Subscription], int, str | None]:
        """One page of subscriptions, how many there are in all, and the token of the next page."""
        with self.emulator.lock:
            known = known_subscriptions(self.emulator.estate)
            page: Page = self._pager.page(lambda: list(known), token, self.page_size)
            return [known[key] for key in page.keys if key in known], len(known), page.next_token
