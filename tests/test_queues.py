"""The work queues on real Azurite: created once per clients, again when gone, base64 on the wire."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

from backupwarden.adapters.azure.clients import AzureClients, StaticTokenCredential
from backupwarden.adapters.storage.queues import WorkQueue
from backupwarden.app import build_protect_queue
from backupwarden.settings import Settings


@pytest.fixture
def queue_name() -> str:
    return f"work-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def raw_queue(azurite: str, queue_name: str) -> Iterator[QueueClient]:
    with QueueClient.from_connection_string(azurite, queue_name) as queue:
        yield queue
        queue.delete_queue()


@pytest.fixture
def clients(azurite: str, queue_name: str) -> Iterator[AzureClients]:
    settings = Settings.from_env({"AzureWebJobsStorage": azurite, "BACKUPWARDEN_PROTECT_QUEUE": queue_name})
    with AzureClients(settings, credential=StaticTokenCredential("unused")) as built:
        yield built


def _bodies(queue: QueueClient) -> list[str]:
    """Visible messages as the Functions queue trigger reads them (base64)."""
    return [base64.b64decode(m.content).decode("utf-8") for m in queue.peek_messages(max_messages=32)]


def test_the_protect_queue_is_created_once_per_clients(
    clients: AzureClients, raw_queue: QueueClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []
    ensure = WorkQueue.ensure

    def counted(queue: WorkQueue) -> None:
        created.append(queue.name)
        ensure(queue)

    monkeypatch.setattr(WorkQueue, "ensure", counted)

    for body in ("one", "two", "three"):
        build_protect_queue(clients.settings, clients).send(body)

    assert created == [raw_queue.queue_name]
    assert _bodies(raw_queue) == ["one", "two", "three"]


def test_a_send_to_a_queue_gone_since_it_was_ensured_creates_it_again(
    clients: AzureClients, raw_queue: QueueClient
) -> None:
    build_protect_queue(clients.settings, clients).send("before")
    raw_queue.delete_queue()

    build_protect_queue(clients.settings, clients).send("after")

    assert _bodies(raw_queue) == ["after"]


def test_a_delayed_message_is_on_the_queue_but_not_yet_visible(
    clients: AzureClients, raw_queue: QueueClient
) -> None:
    queue = build_protect_queue(clients.settings, clients)

    queue.send("later", delay_s=60)

    assert _bodies(raw_queue) == []
    assert raw_queue.get_queue_properties().approximate_message_count == 1
