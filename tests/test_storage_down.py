"""Storage (tables and queues) unreachable, through the functions the host registers and the CLI: a trigger
raises one StorageUnavailable that says storage is down and the delivery will be retried (the host
retries it), after one error line; the CLI exits 1 with one line naming storage and the cause class.
Nothing is acknowledged that was not stored: when storage is back, the retried delivery lands.

"Storage down" is AzureWebJobsStorage's endpoints pointed at a closed port: connections are refused at
once, and BACKUPWARDEN_HTTP_RETRY_TOTAL=0 keeps the SDK from retrying them.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.queue import QueueMessage  # the class the host's queue converter builds
from azure.functions.timer import TimerRequest

from backupwarden.cli.main import main
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Candidate, Result
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.remediation.intake import read_alert_body
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.sweep.messages import SweepWorkItem
from functions.context import StorageUnavailable
from tests.alert_webhook_fixtures import http_request, log_alert
from tests.new_vm_fixtures import PROD, WEU_VAULT, grid_event, vm_id_of
from tests.remediation_fixtures import RemediationBench

Function = Callable[..., Any]
STORAGE_DOWN = re.compile(r"^storage is unavailable \((ServiceRequestError): .+\); the .+ will be retried$")


@pytest.fixture(scope="module")
def functions() -> Iterator[dict[str, Function]]:
    """The functions the deployed entry point registers, by name (a fresh app: one indexes only once)."""
    import function_app

    app = importlib.reload(function_app).app
    yield {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
    importlib.reload(function_app)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connections to it are refused


def storage_down(bench: RemediationBench, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every endpoint of AzureWebJobsStorage (blob, queue, table) at a closed port."""
    port = closed_port()
    down = re.sub(
        r"(Blob|Queue|Table)Endpoint=http://[^/]+/", rf"\1Endpoint=http://127.0.0.1:{port}/", bench.storage
    )
    assert down != bench.storage
    monkeypatch.setenv("AzureWebJobsStorage", down)
    monkeypatch.setenv("BACKUPWARDEN_HTTP_RETRY_TOTAL", "0")


def storage_back(bench: RemediationBench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", bench.storage)


def recorded(bench: RemediationBench) -> list[dict[str, Any]]:
    return [record.row for record in bench.outbox().pending(AUTOMATION_ACTIONS.stream)]


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_retried_cleanly(
    raised: pytest.ExceptionInfo[StorageUnavailable], caplog: pytest.LogCaptureFixture
) -> None:
    message = str(raised.value)
    assert STORAGE_DOWN.match(message), message
    assert "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__, "no SDK traceback chained"
    [logged] = [record for record in errors(caplog) if record.getMessage().startswith("storage is")]
    assert logged.getMessage() == message
    assert not any(record.exc_info for record in caplog.records), "no traceback logged"


# --- triggers ---------------------------------------------------------------------------------------
def test_vm_written_with_storage_down_raises_for_a_retry_and_the_retry_lands(
    remediation_bench: RemediationBench,
    functions: dict[str, Function],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = remediation_bench
    event = grid_event(bench.events_for(bench.create_vm("web-41"))[0])
    storage_down(bench, monkeypatch)

    with pytest.raises(StorageUnavailable) as raised:
        functions["vm_written"](event)

    assert_retried_cleanly(raised, caplog)
    assert "event delivery will be retried" in str(raised.value)
    storage_back(bench, monkeypatch)
    functions["vm_written"](event)  # Event Grid's retry
    assert len(bench.visible_bodies()) == 1
    assert [row["Result"] for row in recorded(bench)] == [Result.ENQUEUED.value]


def test_a_rejected_event_with_storage_down_is_retried_until_its_record_is_stored(
    remediation_bench: RemediationBench,
    functions: dict[str, Function],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = remediation_bench
    event = bench.events_for(bench.create_vm("web-42"))[0]
    event["data"]["resourceUri"] = 7
    storage_down(bench, monkeypatch)

    with pytest.raises(StorageUnavailable):
        functions["vm_written"](grid_event(event))

    storage_back(bench, monkeypatch)
    functions["vm_written"](grid_event(event))
    assert [row["Result"] for row in recorded(bench)] == [Result.FAILED.value]


def test_ship_outcomes_with_storage_down_fails_cleanly_and_the_next_run_ships(
    remediation_bench: RemediationBench,
    functions: dict[str, Function],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage_down(remediation_bench, monkeypatch)

    with pytest.raises(StorageUnavailable) as raised:
        functions["ship_outcomes"](TimerRequest(past_due=False))

    assert_retried_cleanly(raised, caplog)
    assert "outcomes run will be retried" in str(raised.value)
    storage_back(remediation_bench, monkeypatch)
    functions["ship_outcomes"](TimerRequest(past_due=False))
    assert len(recorded(remediation_bench)) == 1, "the run's health record waits for the next run"


def queue_items() -> dict[str, str]:
    """A well-formed work item for each queue function (the poison handlers read the same bodies)."""
    vm_id = vm_id_of(PROD, "rg-app", "web-07").lower()
    protect = NewVmWorkItem(
        vm_id=vm_id, subscription_id=PROD, resource_group="rg-app", vm_name="web-07", event_id="e1"
    )
    candidate = Candidate(
        subscription_id=PROD,
        vault_id=WEU_VAULT.lower(),
        container_name="iaasvmcontainerv2;rg-app;web-07",
        item_name="vm;iaasvmcontainerv2;rg-app;web-07",
        vm_id=vm_id,
        vm_name="web-07",
    )
    sweep = SweepWorkItem(run_id=str(uuid.uuid4()), dry_run=False, candidates=(candidate,))
    remediation = RemediationWorkItem.from_notice(read_alert_body(json.dumps(log_alert()).encode()))
    return {
        "protect_vm": protect.to_json(),
        "sweep_worker": sweep.to_json(),
        "remediate": remediation.to_json(),
    }


QUEUE_FUNCTIONS = ["protect_vm", "sweep_worker", "remediate"]


@pytest.mark.parametrize("function", [*QUEUE_FUNCTIONS, *(f"{name}_poison" for name in QUEUE_FUNCTIONS)])
def test_a_queue_function_with_storage_down_raises_for_a_redelivery(
    remediation_bench: RemediationBench,
    functions: dict[str, Function],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    function: str,
) -> None:
    body = queue_items()[function.removesuffix("_poison")]
    storage_down(remediation_bench, monkeypatch)

    with pytest.raises(StorageUnavailable) as raised:
        functions[function](QueueMessage(id="m-1", body=body.encode(), dequeue_count=1))

    assert_retried_cleanly(raised, caplog)
    assert "queue delivery will be retried" in str(raised.value)


def test_the_sweep_timer_with_storage_down_fails_cleanly(
    remediation_bench: RemediationBench,
    functions: dict[str, Function],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage_down(remediation_bench, monkeypatch)

    with pytest.raises(StorageUnavailable) as raised:
        functions["sweep"](TimerRequest(past_due=False))

    assert_retried_cleanly(raised, caplog)
    assert "sweep run will be retried" in str(raised.value)


def test_a_rejected_alert_body_with_storage_down_is_answered_503_not_400(
    remediation_bench: RemediationBench, functions: dict[str, Function], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 400 is not resent, so it is answered only once its record is stored."""
    storage_down(remediation_bench, monkeypatch)

    response = functions["alert_webhook"](http_request(b"not json"))

    assert response.status_code == 503
    assert json.loads(response.get_body()) == {
        "status": "unavailable",
        "reason": "storage is unavailable right now",
    }
    storage_back(remediation_bench, monkeypatch)
    assert functions["alert_webhook"](http_request(b"not json")).status_code == 400
    assert [row["Result"] for row in recorded(remediation_bench)] == [Result.FAILED.value]


# --- the CLI ---------------------------------------------------------------------------------------
def cli_sources(tmp_path: Path, bench: RemediationBench) -> dict[str, list[str]]:
    alerts = tmp_path / "alerts.json"
    alerts.write_text(json.dumps(log_alert()))
    events = tmp_path / "events.json"
    events.write_text(json.dumps(bench.events_for(bench.create_vm("web-43"))))
    return {
        "sweep": ["sweep"],
        "remediate": ["remediate", str(alerts)],
        "handle-event": ["handle-event", str(events)],
        "ship-outcomes": ["ship-outcomes"],
    }


@pytest.mark.parametrize("command", ["sweep", "remediate", "handle-event", "ship-outcomes"])
def test_the_cli_with_storage_down_exits_1_with_one_line(
    remediation_bench: RemediationBench,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
) -> None:
    argv = cli_sources(tmp_path, remediation_bench)[command]
    storage_down(remediation_bench, monkeypatch)

    status = main(argv)

    err = capsys.readouterr().err
    assert status == 1
    [line] = err.splitlines()
    assert re.match(r"^error: storage is unavailable \(ServiceRequestError: .+\)$", line), line
