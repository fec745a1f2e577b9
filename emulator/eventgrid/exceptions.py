"""Errors of the emulated Event Grid."""

from __future__ import annotations

from emulator.scenario import ScenarioError


class InvalidDeliverySettings(ScenarioError):
    """Delivery settings (scenario `eventgrid:` section or `PUT /_emulator/eventgrid`) that cannot be used.

    A `ScenarioError`, so a bad scenario section fails the scenario load; the admin route
    answers it with a 400. The message names the offending field.
    """
