"""Where and how the subscription's system topic delivers events (one webhook event subscription)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from emulator.eventgrid.exceptions import InvalidDeliverySettings

EVENT_GRID_SCHEMA = "eventgrid"
CLOUD_EVENTS_SCHEMA = "cloudevents"
# Azure's own names for the two schemas (eventDeliverySchema) are accepted too.
_SCHEMA_NAMES = {
    "eventgrid": EVENT_GRID_SCHEMA,
    "eventgridschema": EVENT_GRID_SCHEMA,
    "cloudevents": CLOUD_EVENTS_SCHEMA,
    "cloudeventschemav1_0": CLOUD_EVENTS_SCHEMA,
}
# Event Grid's schedule (azure-facts §5): 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, then hourly
# up to 24 h: 30 attempts in all.
AZURE_RETRY_DELAYS_S: tuple[float, ...] = (10, 30, 60, 300, 600, 1800, 3600) + (3600,) * 22


@dataclass(frozen=True)
class DeliverySettings:
    delivery_url: str | None = None
    schema: str = EVENT_GRID_SCHEMA
    duplicate_creates: bool = True  # a create emits the pair of events a real create can produce
    verify_tls: bool | str = True  # or the path of a CA bundle
    retry_delays_s: tuple[float, ...] = AZURE_RETRY_DELAYS_S  # emulated seconds between attempts
    timeout_s: float = 30.0  # Event Grid waits 30 s for an answer

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_s) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_url": self.delivery_url,
            "schema": self.schema,
            "duplicate_creates": self.duplicate_creates,
            "verify_tls": self.verify_tls,
            "retry_delays_s": list(self.retry_delays_s),
            "timeout_s": self.timeout_s,
        }


def parse_settings(raw: Any) -> DeliverySettings:
    """Settings from a scenario section or admin body; absent keys take their defaults."""
    if raw is None:
        return DeliverySettings()
    if not isinstance(raw, dict):
        raise InvalidDeliverySettings("eventgrid settings must be a mapping")
    unknown = set(raw) - set(DeliverySettings().to_dict())
    if unknown:
        raise InvalidDeliverySettings(
            f"eventgrid: unknown keys {sorted(unknown)}; known: {sorted(DeliverySettings().to_dict())}"
        )
    defaults = DeliverySettings()
    return DeliverySettings(
        delivery_url=_url(raw.get("delivery_url")),
        schema=_schema(raw.get("schema", defaults.schema)),
        duplicate_creates=_bool(
            raw.get("duplicate_creates", defaults.duplicate_creates), "duplicate_creates"
        ),
        verify_tls=_verify(raw.get("verify_tls", defaults.verify_tls)),
        retry_delays_s=_delays(raw.get("retry_delays_s", list(defaults.retry_delays_s))),
        timeout_s=_positive(raw.get("timeout_s", defaults.timeout_s), "timeout_s"),
    )


def _url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    parsed = urlparse(str(value)) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidDeliverySettings(f"eventgrid.delivery_url must be an http(s) URL, not {value!r}")
    return str(value)


def _schema(value: Any) -> str:
    schema = _SCHEMA_NAMES.get(str(value).lower()) if isinstance(value, str) else None
    if schema is None:
        raise InvalidDeliverySettings(
            f"eventgrid.schema must be '{EVENT_GRID_SCHEMA}' or '{CLOUD_EVENTS_SCHEMA}', not {value!r}"
        )
    return schema


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidDeliverySettings(f"eventgrid.{name} must be true or false, not {value!r}")
    return value


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool) or (isinstance(value, str) and value):
        return value
    raise InvalidDeliverySettings(
        f"eventgrid.verify_tls must be true, false or a CA bundle path, not {value!r}"
    )


def _delays(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(_is_number(v) and v >= 0 for v in value):
        raise InvalidDeliverySettings(
            f"eventgrid.retry_delays_s must be a list of non-negative seconds, not {value!r}"
        )
    return tuple(float(v) for v in value)


def _positive(value: Any, name: str) -> float:
    if not _is_number(value) or value <= 0:
        raise InvalidDeliverySettings(f"eventgrid.{name} must be a positive number, not {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
