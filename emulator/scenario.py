"""Scenario documents (YAML or JSON) turned into emulator state. Filled in below."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.core.app import Emulator


def apply_scenario(emulator: Emulator, scenario: dict[str, Any]) -> None:
    raise NotImplementedError
