"""The subscription system topic: resource events published into an outbox and delivered to one webhook.

Event Grid delivers at least once, unordered, and one create can produce two events with the
same `correlationId` (azure-facts §5). With `duplicate_creates` on (the default) every create
publishes that pair, so consumers are tested against it; updates and deletes publish one event.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from emulator.estate import Subscription
from emulator.eventgrid.events import (
    DELETE_SUCCESS,
    WRITE_FAILURE,
    WRITE_SUCCESS,
    ResourceOperation,
    cloud_event,
    event_grid_event,
)
from emulator.eventgrid.outbox import Outbox
from emulator.eventgrid.settings import CLOUD_EVENTS_SCHEMA, DeliverySettings, parse_settings

if TYPE_CHECKING:
    from emulator.core.app import Emulator


class EventGridBackend:
    scenario_section = "eventgrid"

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.settings = DeliverySettings()
        self.outbox = Outbox(emulator.clock, alive=self._is_current)

    def configure(self, section: Any) -> DeliverySettings:
        """Replace the delivery settings (scenario `eventgrid:` section or `PUT /_emulator/eventgrid`)."""
        self.settings = parse_settings(section)
        return self.settings

    # --- publishing --------------------------------------------------------------
    def publish_write(
        self,
        resource_id: str,
        operation_name: str,
        *,
        created: bool,
        succeeded: bool = True,
        duplicate: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Events for a create or update; a create may publish the duplicate pair (see module doc)."""
        op = self._operation(
            WRITE_SUCCESS if succeeded else WRITE_FAILURE,
            resource_id,
            operation_name,
            "PUT" if created else "PATCH",
            "Succeeded" if succeeded else "Failed",
        )
        pair = self.settings.duplicate_creates if duplicate is None else duplicate
        return [self._publish(op) for _ in range(2 if created and pair else 1)]

    def publish_delete(self, resource_id: str, operation_name: str) -> list[dict[str, Any]]:
        op = self._operation(DELETE_SUCCESS, resource_id, operation_name, "DELETE", "Succeeded")
        return [self._publish(op)]

    # --- the outbox --------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Every published event, oldest first, in the schema it was published in."""
        return self.outbox.events()

    def records(self) -> list[dict[str, Any]]:
        """Events with their delivery state and attempts."""
        return self.outbox.records()

    def clear(self) -> None:
        self.outbox.clear()

    def wait_for_deliveries(self, timeout_s: float = 5.0) -> bool:
        """True once no delivery is due or running; retries scheduled later wait for the clock."""
        return self.outbox.wait_until_idle(timeout_s)

    # --- internals ---------------------------------------------------------------
    def _operation(
        self, event_type: str, resource_id: str, operation_name: str, method: str, status: str
    ) -> ResourceOperation:
        subscription_id = resource_id.split("/")[2]
        subscription = self.emulator.estate.subscriptions.get(subscription_id.lower())
        tenant_id = subscription.tenant_id if subscription else Subscription.tenant_id
        return ResourceOperation(
            event_type,
            resource_id,
            operation_name,
            method,
            status,
            subscription_id,
            tenant_id,
            str(uuid.uuid4()),
        )

    def _publish(self, op: ResourceOperation) -> dict[str, Any]:
        settings = self.settings
        build = cloud_event if settings.schema == CLOUD_EVENTS_SCHEMA else event_grid_event
        event = build(op, str(uuid.uuid4()), self.emulator.now())
        self.outbox.add(event, settings)
        return event

    def _is_current(self) -> bool:
        try:
            return self.emulator.backend(EventGridBackend) is self
        except KeyError:
            return False
