"""Errors of the subscriptions API, shaped as ARM answers them."""

from __future__ import annotations

from emulator.core.errors import NotFound


class SubscriptionNotFound(NotFound):
    code = "SubscriptionNotFound"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"The subscription '{subscription_id}' could not be found.")
