"""checkPolicyRestrictions handlers: parse the CheckRestrictionsRequest, ask the backend, answer the
CheckRestrictionsResult."""

from __future__ import annotations

from typing import Any

from emulator.core.app import Call, Reply
from emulator.policyinsights.exceptions import InvalidCheckRestrictionsRequest
from emulator.policyinsights.models import PendingField, PolicyInsightsBackend, RestrictionsRequest


def check_at_subscription(call: Call) -> Reply:
    request = parse_request(call.json_object())
    answer = call.backend(PolicyInsightsBackend).check(call.params["subscriptionId"], None, request)
    return Reply(200, answer)


def check_at_resource_group(call: Call) -> Reply:
    request = parse_request(call.json_object())
    answer = call.backend(PolicyInsightsBackend).check(
        call.params["subscriptionId"], call.params["resourceGroupName"], request
    )
    return Reply(200, answer)


def parse_request(body: dict[str, Any]) -> RestrictionsRequest:
    """CheckRestrictionsRequest: `resourceDetails` (with `resourceContent`) required, `pendingFields`
    and `includeAuditEffect` optional."""
    details = body.get("resourceDetails")
    if not isinstance(details, dict):
        raise InvalidCheckRestrictionsRequest("'resourceDetails' is required and must be an object.")
    content = details.get("resourceContent")
    if not isinstance(content, dict):
        raise InvalidCheckRestrictionsRequest(
            "'resourceDetails.resourceContent' is required and must be an object."
        )
    for key in ("apiVersion", "scope"):
        if key in details and not isinstance(details[key], str):
            raise InvalidCheckRestrictionsRequest(f"'resourceDetails.{key}' must be a string.")
    resource_type = content.get("type", "")
    if not isinstance(resource_type, str):
        raise InvalidCheckRestrictionsRequest("'resourceDetails.resourceContent.type' must be a string.")
    if not isinstance(body.get("includeAuditEffect", False), bool):
        raise InvalidCheckRestrictionsRequest("'includeAuditEffect' must be true or false.")
    return RestrictionsRequest(resource_type, _pending_fields(body.get("pendingFields")))


def _pending_fields(raw: Any) -> tuple[PendingField, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidCheckRestrictionsRequest("'pendingFields' must be an array.")
    fields = []
    for index, entry in enumerate(raw):
        where = f"'pendingFields[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str) or not entry["field"]:
            raise InvalidCheckRestrictionsRequest(f"{where}.field' is required and must be a string.")
        values = entry.get("values")
        if values is not None and (
            not isinstance(values, list) or not all(isinstance(v, str) for v in values)
        ):
            raise InvalidCheckRestrictionsRequest(f"{where}.values' must be an array of strings.")
        fields.append(PendingField(entry["field"], tuple(values) if values is not None else None))
    return tuple(fields)
