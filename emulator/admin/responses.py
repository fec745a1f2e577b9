"""Thin handlers for the admin API; the rules live in the Emulator and the scenario loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator import profiles
from emulator.core.app import Call, Reply
from emulator.core.errors import BadRequest
from emulator.core.realism import Fault, Latency
from emulator.core.throttle import BucketSpec
from emulator.scenario import ScenarioError, load_scenario_file

Handler = Callable[[Call], Reply]


def reset(call: Call) -> Reply:
    call.emulator.reset()
    return Reply(204)


def load_scenario(call: Call) -> Reply:
    """Body: a whole scenario document, or {"name": "demo"} for a shipped one."""
    body = call.json_object()
    try:
        document = load_scenario_file(str(body["name"])) if set(body) == {"name"} else body
        call.emulator.load_scenario(document)
    except ScenarioError as exc:
        raise BadRequest(str(exc), code="InvalidScenario") from exc
    return Reply(204)


def apply_profile(call: Call) -> Reply:
    """Body: {"name": "unkind"}: switch a realism profile on, keeping the estate."""
    name = call.json_object().get("name")
    try:
        profiles.apply_profile(call.emulator, str(name))
    except (ScenarioError, ValueError) as exc:
        raise BadRequest(str(exc), code="InvalidProfile") from exc
    return Reply(204)


def get_clock(call: Call) -> Reply:
    return Reply(200, {"now": call.emulator.now().isoformat(), "scale": call.emulator.clock.scale})


def advance_clock(call: Call) -> Reply:
    seconds = call.json_object().get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise BadRequest("'seconds' must be a non-negative number.")
    now = call.emulator.advance(float(seconds))
    return Reply(200, {"now": now.isoformat(), "scale": call.emulator.clock.scale})


def get_faults(call: Call) -> Reply:
    return Reply(200, {"faults": [f.to_dict() for f in call.emulator.faults.list()]})


def set_faults(call: Call) -> Reply:
    raw = call.json_object().get("faults")
    if not isinstance(raw, list):
        raise BadRequest(
            "'faults' must be a list of {path, status, method?, rate?, count?, retry_after_s?, burst?, "
            "lose_answer?}."
        )
    try:
        call.emulator.faults.set([Fault.from_dict(_mapping(f, "faults[]")) for f in raw])
    except (KeyError, ValueError, TypeError) as exc:
        raise BadRequest(f"invalid fault: {exc}") from exc
    return get_faults(call)


def clear_faults(call: Call) -> Reply:
    call.emulator.faults.clear()
    return Reply(204)


def set_throttle(call: Call) -> Reply:
    body = call.json_object()
    throttle = call.emulator.throttle
    try:
        if "enabled" in body:
            throttle.enabled = bool(body["enabled"])
        for kind in ("read", "write"):
            if kind in body:
                spec = _mapping(body[kind], kind)
                throttle.specs[kind] = BucketSpec(float(spec["capacity"]), float(spec["refill_per_s"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise BadRequest(f"invalid throttle setting: {exc}") from exc
    throttle.reset()
    return Reply(200, {"enabled": throttle.enabled, **{k: vars(v) for k, v in throttle.specs.items()}})


def set_latency(call: Call) -> Reply:
    try:
        call.emulator.latency = Latency.from_dict(call.json_object())
    except (ValueError, TypeError, AttributeError) as exc:
        raise BadRequest(f"invalid latency setting: {exc}") from exc
    return Reply(204)


def get_requests(call: Call) -> Reply:
    log = call.emulator.requests
    return Reply(200, {**log.summary(), "requests": [e.to_dict() for e in log.entries()]})


def clear_requests(call: Call) -> Reply:
    call.emulator.requests.clear()
    return Reply(204)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be an object")
    return value
