"""Thin handlers for the Event Grid admin API: the outbox and the delivery settings."""

from __future__ import annotations

from emulator.core.app import Call, Reply
from emulator.core.errors import BadRequest
from emulator.eventgrid.exceptions import InvalidDeliverySettings
from emulator.eventgrid.models import EventGridBackend


def list_events(call: Call) -> Reply:
    return Reply(200, {"events": call.backend(EventGridBackend).records()})


def clear_events(call: Call) -> Reply:
    call.backend(EventGridBackend).clear()
    return Reply(204)


def get_settings(call: Call) -> Reply:
    return Reply(200, call.backend(EventGridBackend).settings.to_dict())


def put_settings(call: Call) -> Reply:
    try:
        settings = call.backend(EventGridBackend).configure(call.json_object())
    except InvalidDeliverySettings as exc:
        raise BadRequest(str(exc), code="InvalidDeliverySettings") from exc
    return Reply(200, settings.to_dict())
