"""Thin HTTP handlers: parse the request, call the backend, render the reply."""

from __future__ import annotations

import json
from typing import Any

from emulator.core.app import Call, Reply
from emulator.core.errors import BadRequest
from emulator.monitor.exceptions import invalid_request
from emulator.monitor.models import MonitorBackend


def _backend(call: Call) -> MonitorBackend:
    backend = call.backend(MonitorBackend)
    backend.note_endpoint(call.base_url)
    return backend


# --- Logs Ingestion API ----------------------------------------------------------------------
def upload(call: Call) -> Reply:
    _backend(call).ingest(
        call.params["ruleId"], call.params["stream"], call.raw_body, call.headers.get("content-encoding")
    )
    return Reply(204)


# --- Log Analytics query API ---------------------------------------------------------------
def query_post(call: Call) -> Reply:
    body = _query_body(call.raw_body)
    workspaces = body.get("workspaces")
    if workspaces is not None and not isinstance(workspaces, list):
        raise invalid_request(
            "InvalidArgument", "'workspaces' must be a list of workspace ids, names or resource ids."
        )
    result = _backend(call).query(
        call.params["workspaceId"], body.get("query"), body.get("timespan"), workspaces
    )
    return Reply(200, result.to_body())


def query_get(call: Call) -> Reply:
    workspaces = [w.strip() for w in call.query.get("workspaces", "").split(",") if w.strip()]
    result = _backend(call).query(
        call.params["workspaceId"], call.query.get("query"), call.query.get("timespan"), workspaces
    )
    return Reply(200, result.to_body())


def _query_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("InvalidJson", f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise invalid_request("InvalidJson", "The request body must be a JSON object with 'query'.")
    return body


# --- emulator admin ------------------------------------------------------------------------
def list_alerts(call: Call) -> Reply:
    return Reply(200, {"value": call.backend(MonitorBackend).outbox_entries()})


def evaluate_alerts(call: Call) -> Reply:
    return Reply(200, {"value": _backend(call).evaluate_alerts()})


def list_rules(call: Call) -> Reply:
    rules = call.backend(MonitorBackend).alerts.rules.values()
    return Reply(200, {"value": [rule.to_dict() for rule in rules]})


def add_rule(call: Call) -> Reply:
    backend = _backend(call)
    try:
        rule = backend.add_alert_rule(call.json_object())
    except (ValueError, KeyError) as exc:
        raise BadRequest(f"Invalid alert rule: {exc.args[0] if exc.args else exc}") from exc
    return Reply(201, rule.to_dict())
