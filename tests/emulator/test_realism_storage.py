"""Storage's unkindness, through the real azure-data-tables and azure-storage-queue clients on Azurite.

Azurite restarts (`Azurite(persistent=True).restart()`: same ports, same data), and Table Storage's
own answers to a repeated write whose first answer was lost: 409 for an insert, 412 for a
conditional update (azure-facts §11). The lost answers come from tests/lossy_proxy.py, as in the
ledger's tests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ServiceResponseError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient

from emulator.azurite import Azurite, AzuriteError, connection_string
from tests.lossy_proxy import LossyProxy


@pytest.fixture(scope="module")
def persistent_azurite() -> Iterator[Azurite]:
    with Azurite(persistent=True) as server:
        yield server


def test_a_restarted_azurite_comes_back_on_the_same_ports_with_its_tables_and_queues(
    persistent_azurite: Azurite,
) -> None:
    tables = TableServiceClient.from_connection_string(persistent_azurite.connection_string)
    table = tables.create_table(f"t{uuid.uuid4().hex[:12]}")
    table.create_entity({"PartitionKey": "vm", "RowKey": "backup", "Status": "InProgress"})
    queue = QueueClient.from_connection_string(
        persistent_azurite.connection_string, f"q{uuid.uuid4().hex[:12]}"
    )
    queue.create_queue()
    queue.send_message("sweep-work-item")
    ports = dict(persistent_azurite.ports)

    persistent_azurite.restart()

    assert persistent_azurite.ports == ports and persistent_azurite.restarts == 1
    assert table.get_entity("vm", "backup")["Status"] == "InProgress"  # the same clients, reconnected
    assert [message.content for message in queue.receive_messages()] == ["sweep-work-item"]


def test_an_in_memory_azurite_refuses_to_restart() -> None:
    with pytest.raises(AzuriteError, match="persistent"):
        Azurite().restart()


@pytest.fixture
def lossy_table(azurite: str) -> Iterator[tuple[TableClient, LossyProxy]]:
    """A table whose traffic goes through a proxy that can lose answers."""
    ports = [int(port) for port in re.findall(r"Endpoint=http://127\.0\.0\.1:(\d+)/", azurite)]
    blob, queue, table_port = ports
    with LossyProxy(table_port) as proxy:
        name = f"lossy{uuid.uuid4().hex[:12]}"
        with TableClient.from_connection_string(
            connection_string(blob, queue, proxy.port), table_name=name
        ) as table:
            table.create_table()
            yield table, proxy
            table.delete_table()


def test_a_repeated_insert_whose_first_answer_was_lost_meets_409(
    lossy_table: tuple[TableClient, LossyProxy],
) -> None:
    table, proxy = lossy_table
    proxy.lose_answer(b"POST /devstoreaccount1/lossy")

    with pytest.raises(ServiceResponseError):  # azure-core does not retry a POST whose answer is lost
        table.create_entity({"PartitionKey": "vm", "RowKey": "claim", "Run": "run-1"})
    with pytest.raises(ResourceExistsError) as repeat:
        table.create_entity({"PartitionKey": "vm", "RowKey": "claim", "Run": "run-1"})

    assert proxy.lost == 1
    assert repeat.value.status_code == 409
    assert table.get_entity("vm", "claim")["Run"] == "run-1"


def test_a_conditional_update_whose_answer_was_lost_is_retried_and_meets_412(
    lossy_table: tuple[TableClient, LossyProxy],
) -> None:
    table, proxy = lossy_table
    created = table.create_entity({"PartitionKey": "vm", "RowKey": "claim", "Status": "InProgress"})
    proxy.lose_answer(b"PUT /devstoreaccount1/lossy")

    with pytest.raises(ResourceModifiedError) as repeat:  # azure-core retries the PUT by itself
        table.update_entity(
            {"PartitionKey": "vm", "RowKey": "claim", "Status": "Done"},
            mode=UpdateMode.REPLACE,
            etag=created["etag"],
            match_condition=MatchConditions.IfNotModified,
        )

    assert proxy.lost == 1
    assert repeat.value.status_code == 412
    assert table.get_entity("vm", "claim")["Status"] == "Done"  # the first PUT was stored
