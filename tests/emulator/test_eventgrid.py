"""Event Grid: resource events in the outbox (both schemas) and their delivery to a local webhook."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
import requests
import trustme
from azure.mgmt.compute import ComputeManagementClient

from emulator import Emulator, EmulatorServer
from emulator.compute.models import ComputeBackend
from emulator.eventgrid.exceptions import InvalidDeliverySettings
from emulator.eventgrid.models import EventGridBackend
from emulator.eventgrid.settings import AZURE_RETRY_DELAYS_S
from emulator.scenario import ScenarioError

SUB = "11111111-1111-4111-8111-111111111111"
VM_ID = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01"
EVENT_GRID_KEYS = {
    "id",
    "topic",
    "subject",
    "eventType",
    "eventTime",
    "data",
    "dataVersion",
    "metadataVersion",
}
CLOUD_EVENT_KEYS = {"id", "source", "subject", "type", "time", "data", "specversion"}
DATA_KEYS = {
    "authorization",
    "claims",
    "correlationId",
    "httpRequest",
    "resourceProvider",
    "resourceUri",
    "operationName",
    "status",
    "subscriptionId",
    "tenantId",
}


class Receiver:
    """A webhook on 127.0.0.1:0 answering with scripted statuses (the last one repeats)."""

    def __init__(
        self,
        statuses: list[int],
        on_post: Callable[[list[Any]], None] | None = None,
        tls_ca: trustme.CA | None = None,
    ) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[dict[str, str], list[Any]]] = []
        self._on_post = on_post
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.scheme = "http"
        if tls_ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_ca.issue_cert("127.0.0.1").configure_cert(context)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver._on_post is not None:
                    receiver._on_post(body)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}/api/events"

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def events(emulator: Emulator) -> Iterator[EventGridBackend]:
    yield emulator.backend(EventGridBackend)


def create_vm(emulator: Emulator, **kwargs: Any) -> None:
    emulator.backend(ComputeBackend).create_vm(SUB, "rg-web", "web-01", "westeurope", **kwargs)


def records(backend: EventGridBackend) -> list[dict[str, Any]]:
    assert backend.wait_for_deliveries(timeout_s=10), "deliveries did not settle"
    return backend.records()


# --- what is published ------------------------------------------------------------------
def test_vm_create_publishes_the_duplicate_write_success_pair(
    emulator: Emulator, events: EventGridBackend
) -> None:
    create_vm(emulator, tags={"env": "prod"})

    first, second = events.events()

    for event in (first, second):
        assert set(event) == EVENT_GRID_KEYS
        assert set(event["data"]) == DATA_KEYS
        assert event["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
        assert (event["topic"], event["subject"]) == (f"/subscriptions/{SUB}", VM_ID)
        assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
        data = event["data"]
        assert data["operationName"] == "Microsoft.Compute/virtualMachines/write"
        assert (data["resourceUri"], data["status"], data["subscriptionId"]) == (VM_ID, "Succeeded", SUB)
        assert data["resourceProvider"] == "Microsoft.Compute"
        assert data["httpRequest"]["method"] == "PUT"
        assert event["eventTime"].endswith("Z")
    assert first["data"]["correlationId"] == second["data"]["correlationId"]
    assert first["id"] != second["id"]


def test_duplicate_creates_off_publishes_one_event_per_create(
    emulator: Emulator, events: EventGridBackend
) -> None:
    events.configure({"duplicate_creates": False})

    create_vm(emulator)

    assert len(events.events()) == 1


def test_update_publishes_one_event_with_its_own_correlation_id(
    emulator: Emulator, events: EventGridBackend
) -> None:
    create_vm(emulator)

    emulator.backend(ComputeBackend).update_vm(VM_ID, tags={"backup": "daily"})

    created, _, updated = events.events()
    assert updated["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert updated["data"]["httpRequest"]["method"] == "PATCH"
    assert updated["data"]["correlationId"] != created["data"]["correlationId"]


def test_failed_provisioning_publishes_write_failure(emulator: Emulator, events: EventGridBackend) -> None:
    create_vm(emulator, provisioning_state="Failed", duplicate_event=False)

    (event,) = events.events()
    assert (event["eventType"], event["data"]["status"]) == (
        "Microsoft.Resources.ResourceWriteFailure",
        "Failed",
    )


def test_delete_publishes_delete_success(emulator: Emulator, events: EventGridBackend) -> None:
    create_vm(emulator, emit_events=False)

    emulator.backend(ComputeBackend).delete_vm(VM_ID)

    (event,) = events.events()
    assert event["eventType"] == "Microsoft.Resources.ResourceDeleteSuccess"
    assert event["data"]["operationName"] == "Microsoft.Compute/virtualMachines/delete"
    assert event["data"]["httpRequest"]["method"] == "DELETE"


def test_cloudevents_schema_on_request(emulator: Emulator, events: EventGridBackend) -> None:
    events.configure({"schema": "cloudevents"})

    create_vm(emulator)

    first, second = events.events()
    for event in (first, second):
        assert set(event) == CLOUD_EVENT_KEYS
        assert set(event["data"]) == DATA_KEYS
        assert (event["type"], event["specversion"]) == ("Microsoft.Resources.ResourceWriteSuccess", "1.0")
        assert (event["source"], event["subject"]) == (f"/subscriptions/{SUB}", VM_ID)
    assert first["data"]["correlationId"] == second["data"]["correlationId"]


def test_emit_events_off_publishes_nothing(emulator: Emulator, events: EventGridBackend) -> None:
    create_vm(emulator, emit_events=False)

    assert events.events() == []


# --- admin API ------------------------------------------------------------------------
def admin(server: EmulatorServer, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method, f"{server.endpoint}{path}", json=body, verify=server.ca_bundle, timeout=10
    )


def test_admin_lists_and_clears_the_outbox(emulator_server: EmulatorServer, emulator: Emulator) -> None:
    answer = admin(
        emulator_server,
        "POST",
        "/_emulator/vms",
        {
            "subscription_id": SUB,
            "resource_group": "rg-web",
            "name": "web-01",
            "location": "westeurope",
            "duplicate_event": False,
        },
    )
    assert answer.status_code == 201

    (record,) = admin(emulator_server, "GET", "/_emulator/events").json()["events"]
    assert (record["schema"], record["state"], record["attempts"]) == ("eventgrid", "Stored", [])
    assert record["event"]["subject"] == VM_ID

    assert admin(emulator_server, "DELETE", "/_emulator/events").status_code == 204
    assert admin(emulator_server, "GET", "/_emulator/events").json()["events"] == []


def test_admin_puts_and_gets_delivery_settings(emulator_server: EmulatorServer, emulator: Emulator) -> None:
    settings = {
        "delivery_url": "https://127.0.0.1:9/api/events",
        "schema": "CloudEventSchemaV1_0",
        "retry_delays_s": [1, 2],
    }

    put = admin(emulator_server, "PUT", "/_emulator/eventgrid", settings)

    assert put.status_code == 200
    got = admin(emulator_server, "GET", "/_emulator/eventgrid").json()
    assert (got["delivery_url"], got["schema"], got["retry_delays_s"]) == (
        settings["delivery_url"],
        "cloudevents",
        [1, 2],
    )
    assert got["duplicate_creates"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delivery_url": "ftp://example.com/x"}, "delivery_url"),
        ({"schema": "xml"}, "schema"),
        ({"duplicate_creates": "yes"}, "duplicate_creates"),
        ({"retry_delays_s": [10, -1]}, "retry_delays_s"),
        ({"verify_tls": 0}, "verify_tls"),
        ({"deliveryUrl": "https://x"}, "deliveryUrl"),
    ],
)
def test_admin_rejects_bad_settings_naming_the_field(
    emulator_server: EmulatorServer, emulator: Emulator, body: dict[str, Any], field: str
) -> None:
    answer = admin(emulator_server, "PUT", "/_emulator/eventgrid", body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidDeliverySettings"
    assert field in answer.json()["error"]["message"]


def test_scenario_section_configures_delivery(emulator: Emulator) -> None:
    emulator.load_scenario({"eventgrid": {"delivery_url": "http://127.0.0.1:9/", "duplicate_creates": False}})

    settings = emulator.backend(EventGridBackend).settings
    assert (settings.delivery_url, settings.duplicate_creates) == ("http://127.0.0.1:9/", False)
    with pytest.raises(ScenarioError, match="schema"):
        emulator.load_scenario({"eventgrid": {"schema": "xml"}})


def test_default_retry_schedule_is_event_grids() -> None:
    delays = list(AZURE_RETRY_DELAYS_S)

    assert delays[:7] == [10, 30, 60, 300, 600, 1800, 3600]
    assert len(delays) + 1 == 30
    assert sum(delays) <= 24 * 3600


def test_bad_settings_from_python_raise_invalid_delivery_settings(events: EventGridBackend) -> None:
    with pytest.raises(InvalidDeliverySettings, match="timeout_s"):
        events.configure({"timeout_s": 0})


# --- delivery -------------------------------------------------------------------------
def test_delivers_each_event_as_a_json_array_with_the_notification_header(
    emulator: Emulator, events: EventGridBackend
) -> None:
    with Receiver([200]) as receiver:
        events.configure({"delivery_url": receiver.url})
        create_vm(emulator)

        delivered = records(events)

    assert [r["state"] for r in delivered] == ["Delivered", "Delivered"]
    assert [r["attempts"][0]["status"] for r in delivered] == [200, 200]
    assert len(receiver.posts) == 2
    for (headers, body), record in zip(receiver.posts, delivered, strict=True):
        assert headers["aeg-event-type"] == "Notification"
        assert headers["aeg-delivery-count"] == "0"
        assert headers["content-type"].startswith("application/json")
        assert body == [record["event"]]


def test_cloudevents_are_posted_as_a_cloudevents_batch(emulator: Emulator, events: EventGridBackend) -> None:
    with Receiver([200]) as receiver:
        events.configure({"delivery_url": receiver.url, "schema": "cloudevents", "duplicate_creates": False})
        create_vm(emulator)
        records(events)

    ((headers, body),) = receiver.posts
    assert headers["content-type"].startswith("application/cloudevents-batch+json")
    assert body[0]["specversion"] == "1.0"


def test_a_400_answer_is_not_retried(emulator: Emulator, events: EventGridBackend) -> None:
    with Receiver([400, 200]) as receiver:
        events.configure({"delivery_url": receiver.url, "duplicate_creates": False, "retry_delays_s": [0, 0]})
        create_vm(emulator)
        (record,) = records(events)
        emulator.advance(60)
        assert events.wait_for_deliveries(timeout_s=10)

    assert record["state"] == "Dropped"
    assert [a["status"] for a in record["attempts"]] == [400]
    assert len(receiver.posts) == 1


def test_a_503_answer_is_retried_on_the_schedule(emulator: Emulator, events: EventGridBackend) -> None:
    with Receiver([503, 200]) as receiver:
        events.configure(
            {"delivery_url": receiver.url, "duplicate_creates": False, "retry_delays_s": [10, 30]}
        )
        create_vm(emulator)

        (first,) = records(events)
        assert first["state"] == "Pending"
        assert [a["status"] for a in first["attempts"]] == [503]
        emulator.advance(9)
        assert len(records(events)[0]["attempts"]) == 1  # not due yet
        emulator.advance(1)
        (second,) = records(events)

    assert second["state"] == "Delivered"
    assert [a["status"] for a in second["attempts"]] == [503, 200]
    assert [headers["aeg-delivery-count"] for headers, _ in receiver.posts] == ["0", "1"]


def test_delivery_gives_up_after_the_last_attempt(emulator: Emulator, events: EventGridBackend) -> None:
    with Receiver([500]) as receiver:
        events.configure({"delivery_url": receiver.url, "duplicate_creates": False, "retry_delays_s": [5]})
        create_vm(emulator)
        records(events)
        emulator.advance(5)
        (record,) = records(events)
        emulator.advance(3600)
        assert events.wait_for_deliveries(timeout_s=10)

    assert record["state"] == "Dropped"
    assert [a["status"] for a in record["attempts"]] == [500, 500]
    assert len(receiver.posts) == 2


def test_an_unreachable_endpoint_is_retried(emulator: Emulator, events: EventGridBackend) -> None:
    with Receiver([200]) as closed:
        url = closed.url  # nothing listens here once the receiver is closed
    events.configure(
        {"delivery_url": url, "duplicate_creates": False, "retry_delays_s": [10], "timeout_s": 2}
    )

    create_vm(emulator)
    (record,) = records(events)

    assert record["state"] == "Pending"
    (attempt,) = record["attempts"]
    assert attempt["status"] is None and "ConnectionError" in attempt["error"]


def test_delivery_over_https_verifies_with_the_given_ca(
    emulator: Emulator, events: EventGridBackend, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Receiver([200], tls_ca=ca) as receiver:
        events.configure(
            {"delivery_url": receiver.url, "duplicate_creates": False, "verify_tls": str(ca_file)}
        )
        create_vm(emulator)
        (record,) = records(events)

    assert receiver.url.startswith("https://")
    assert record["state"] == "Delivered"


def test_the_receiver_can_call_back_into_the_emulator(
    emulator_server: EmulatorServer, emulator: Emulator, events: EventGridBackend, sdk_kwargs: dict[str, Any]
) -> None:
    """Deliveries run outside the emulator's lock: a handler that reads the VM back does not deadlock."""
    seen: list[str | None] = []
    client = ComputeManagementClient(subscription_id=SUB, **sdk_kwargs)

    def read_back(body: list[Any]) -> None:
        resource_group, name = body[0]["subject"].split("/")[4], body[0]["subject"].split("/")[-1]
        seen.append(client.virtual_machines.get(resource_group, name).provisioning_state)

    with Receiver([200], on_post=read_back) as receiver:
        events.configure({"delivery_url": receiver.url, "duplicate_creates": False})
        answer = admin(
            emulator_server,
            "POST",
            "/_emulator/vms",
            {
                "subscription_id": SUB,
                "resource_group": "rg-web",
                "name": "web-01",
                "location": "westeurope",
            },
        )
        assert answer.status_code == 201
        (record,) = records(events)

    assert record["state"] == "Delivered"
    assert seen == ["Succeeded"]


def test_events_published_before_a_url_is_set_stay_stored(
    emulator: Emulator, events: EventGridBackend
) -> None:
    create_vm(emulator, duplicate_event=False)
    with Receiver([200]) as receiver:
        events.configure({"delivery_url": receiver.url})
        (record,) = records(events)

    assert record["state"] == "Stored"
    assert receiver.posts == []
