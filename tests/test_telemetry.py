"""Structured log fields reach the telemetry pipeline as attributes, correlated per invocation.

The pipeline is built as the Python worker builds it when PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is
true (functions/telemetry.py): azure-monitor-opentelemetry's `configure_azure_monitor` puts an
OpenTelemetry `LoggingHandler` on the root logger, and before each invocation the worker attaches the
context extracted from the host's traceparent (azure_functions_worker/dispatcher.py,
`configure_opentelemetry`). Here the exporter is an in-memory one instead of Azure Monitor's; the
handlers are the deployed ones (function_app), called with real `func.HttpRequest` objects against Azurite.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from functions.telemetry import LOG_LEVELS
from tests.alert_webhook_fixtures import (  # noqa: F401
    Webhook,
    handlers_fixture,
    http_request,
    log_alert,
    webhook_fixture,
)

Handler = Callable[[func.HttpRequest], func.HttpResponse]


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The root logger exports through OpenTelemetry, at the worker's root level (INFO)."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield exporter
    root.removeHandler(handler)
    root.setLevel(level)
    provider.shutdown()


def invoke(handler: Handler, body: dict[str, Any] | bytes) -> tuple[str, str, func.HttpResponse]:
    """One invocation as the worker runs it: the host's trace context attached around the call.
    Returns the trace id and span id of that traceparent, and the answer."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    carrier = {"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": ""}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        return trace_id, span_id, handler(http_request(body))
    finally:
        otel_context.detach(token)


def by_message(exporter: InMemoryLogRecordExporter, message: str) -> list[Any]:
    return [data.log_record for data in exporter.get_finished_logs() if data.log_record.body == message]


def test_structured_fields_arrive_as_attributes_with_the_invocations_trace(
    webhook: Webhook, handlers: dict[str, Handler], exported: InMemoryLogRecordExporter
) -> None:
    alert = log_alert()
    first = invoke(handlers["alert_webhook"], alert)
    second = invoke(handlers["alert_webhook"], alert)  # the action group's retry: a duplicate
    rejected = invoke(handlers["alert_webhook"], b"not json")

    assert [answer.status_code for _, _, answer in (first, second, rejected)] == [202, 202, 400]
    taken_in = by_message(exported, "alert notification taken in")
    assert [record.attributes["status"] for record in taken_in] == ["accepted", "duplicate"]
    for record, (trace_id, span_id, _) in zip(taken_in, (first, second), strict=True):
        assert record.attributes["alert_id"] == alert["data"]["essentials"]["alertId"]
        assert record.attributes["alert_rule"] == "backupwarden-backup-failed"
        assert (f"{record.trace_id:032x}", f"{record.span_id:016x}") == (trace_id, span_id)

    [refused] = by_message(exported, "alert webhook: rejected")
    assert refused.attributes["reason"] == json.loads(rejected[2].get_body())["reason"]
    assert f"{refused.trace_id:032x}" == rejected[0]
    assert refused.severity_text == "WARN"

    invocations = {trace_id for trace_id, _, _ in (first, second, rejected)}
    assert {f"{data.log_record.trace_id:032x}" for data in exported.get_finished_logs()} <= invocations


def test_the_app_logs_at_info_and_the_azure_sdks_only_from_warning(
    handlers: dict[str, Handler], exported: InMemoryLogRecordExporter
) -> None:
    """function_app sets the levels (handlers: a fresh import of it); the SDKs' per-request INFO
    lines would drown the app's records and bill for them."""
    assert {name: logging.getLogger(name).level for name in LOG_LEVELS} == LOG_LEVELS
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: ...")
    logging.getLogger("backupwarden.flows.sweep").info("sweep planned", extra={"candidates": 3})

    [record] = [data.log_record for data in exported.get_finished_logs()]
    assert (record.body, dict(record.attributes or {})["candidates"]) == ("sweep planned", 3)
