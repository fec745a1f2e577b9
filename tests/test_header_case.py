"""Every HTTP header the app reads, read with lower-case names, as HTTP defines them (issue 13, point 2).

Field names are case-insensitive (RFC 9110 §5.1) and always lower-case in HTTP/2 (RFC 9113 §8.2.1);
the azure-cli recordings in ../shared/recordings have them lower-case too. The emulator sends them
lower-case when `realism.lowercase_headers` is on; Azurite already names `etag`, `date` and the
`x-ms-*` headers in lower case. Each reader is driven through the real SDK clients (or, for the
webhook, a real `func.HttpRequest`):
- enable protection: the container refresh's `Location` and its polls' `Retry-After`, the PUT's
  `Azure-AsyncOperation` / `Location` and `Retry-After` (backupwarden/adapters/azure/protection.py);
- backup now: the POST's `Azure-AsyncOperation` / `Location` and `Retry-After` (recovery_services.py);
- pacing: `x-ms-ratelimit-remaining-subscription-*` and a 429's `Retry-After` (pacing.py), the
  quota headers' log (clients.py);
- the ledger's, claims' and outbox's writes on an ETag (storage/tables.py);
- the secure webhook's `Authorization` (functions/alerts.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceModifiedError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

from backupwarden.adapters.azure.clients import RateLimitHeaderLogger, StaticTokenCredential
from backupwarden.adapters.azure.pacing import RESYNC_MARGIN, BucketRate, Pacer, PacingPolicy
from backupwarden.adapters.azure.protection import Protection, item_names
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.tables import write_on_etag
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.scenario import ScenarioError
from tests.alert_webhook_fixtures import (
    Tenant,
    Webhook,
    handlers_fixture,  # noqa: F401
    log_alert,
    rsa_keys,  # noqa: F401
    secure_webhook_fixture,  # noqa: F401
    tenant_fixture,  # noqa: F401
    webhook_fixture,  # noqa: F401
)

SUBSCRIPTION = "44444444-4444-4444-8444-444444444444"
GROUPS = f"/subscriptions/{SUBSCRIPTION}/resourceGroups"
VAULT = VaultRef.parse(f"{GROUPS}/rg-backup/providers/Microsoft.RecoveryServices/vaults/rsv-weu")
NEW_VM_ID = f"{GROUPS}/rg-app/providers/Microsoft.Compute/virtualMachines/vm-new"
RETRY_AFTER_S = 2  # shorter than the poll interval, so honouring it shows in the waits
POLL_INTERVAL_S = 5.0


def lowercase_scenario() -> dict[str, Any]:
    """A vault, a VM it has not discovered and a protected one; every answer's header names lower-case."""
    return {
        "clock": {"scale": 1.0},  # Retry-After in real seconds equals the emulated hint
        "timings": {
            "refresh_containers_s": 4,
            "configure_operation_s": 6,
            "backup_operation_s": 4,
            "retry_after_s": RETRY_AFTER_S,
        },
        "realism": {"lowercase_headers": True},  # and ARM's buckets: 250 reads, 200 writes
        "subscriptions": [
            {
                "id": SUBSCRIPTION,
                "vaults": [{"name": "rsv-weu", "resource_group": "rg-backup", "location": "westeurope"}],
                "vms": [
                    {"name": "vm-new", "resource_group": "rg-app", "location": "westeurope"},
                    {
                        "name": "vm-old",
                        "resource_group": "rg-app",
                        "location": "westeurope",
                        "protection": {"vault": "rsv-weu", "state": "Protected"},
                    },
                ],
            }
        ],
    }


class RecordedWaits:
    """A sleep that records each wait and moves a clock by it: the emulator's if given, else `clock()`."""

    def __init__(self, emulator: Emulator | None = None) -> None:
        self.emulator = emulator
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.emulator is not None:
            self.emulator.advance(seconds)


@pytest.fixture
def lowercase(emulator: Emulator) -> Emulator:
    emulator.load_scenario(lowercase_scenario())
    return emulator


def adapters(sdk_kwargs: dict[str, Any], sleep: RecordedWaits) -> tuple[RecoveryServices, Protection]:
    client = RecoveryServicesBackupClient(subscription_id=SUBSCRIPTION, **sdk_kwargs)
    recovery = RecoveryServices(lambda _: client, poll_interval_s=POLL_INTERVAL_S, sleep=sleep)
    protection = Protection(lambda _: client, recovery, poll_interval_s=POLL_INTERVAL_S, sleep=sleep)
    return recovery, protection


def header_names(server: EmulatorServer, path: str) -> list[str]:
    """The header names of one answer as they came over the wire (requests keeps their case)."""
    answer = requests.get(
        f"{server.endpoint}{path}", headers={"Authorization": "Bearer x"}, verify=server.ca_bundle, timeout=10
    )
    return list(answer.raw.headers.keys())


# --- the emulator's knob ---------------------------------------------------------------------------
def test_lowercase_headers_is_off_by_default_and_on_per_scenario_or_at_run_time(
    emulator: Emulator, emulator_server: EmulatorServer
) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}?api-version=2022-12-01"
    emulator.load_scenario({"subscriptions": [{"id": SUBSCRIPTION}]})
    assert {"Content-Type", "Content-Length", "Date"} <= set(header_names(emulator_server, path))

    emulator.load_scenario({"realism": {"lowercase_headers": True}, "subscriptions": [{"id": SUBSCRIPTION}]})
    names = header_names(emulator_server, path)
    assert {"content-type", "content-length", "date", "x-ms-ratelimit-remaining-subscription-reads"} <= set(
        names
    )
    assert names == [name.lower() for name in names]

    emulator.reset()
    assert emulator.lowercase_headers is False
    emulator.lowercase_headers = True  # at run time
    assert header_names(emulator_server, "/subscriptions?api-version=2022-12-01")[0] == "server"


def test_a_scenario_lowercase_headers_must_be_a_boolean(emulator: Emulator) -> None:
    with pytest.raises(ScenarioError, match=r"^realism\.lowercase_headers must be true or false$"):
        emulator.load_scenario({"realism": {"lowercase_headers": "yes"}})


# --- Recovery Services operations ----------------------------------------------------------------
def test_enabling_protection_of_an_undiscovered_vm_follows_the_lowercase_refresh_location(
    lowercase: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    sleep = RecordedWaits(lowercase)
    _, protection = adapters(sdk_kwargs, sleep)

    enabled = protection.enable(VAULT, NEW_VM_ID, "rg-app", "vm-new", "DefaultPolicy")

    assert enabled.job_id, enabled
    assert protection.status(SUBSCRIPTION, "westeurope", NEW_VM_ID).protected
    polled = {
        e.path for e in lowercase.requests.entries() if "/backupFabrics/Azure/operationResults/" in e.path
    }
    assert len(polled) == 1 and not polled.pop().endswith("/"), "the poll reads the refresh's own operation"
    assert sleep.waits and set(sleep.waits) == {RETRY_AFTER_S}, "every poll waits the lower-case retry-after"


def test_enabling_protection_of_a_discovered_vm_reads_the_lowercase_put_headers(
    lowercase: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    sleep = RecordedWaits(lowercase)
    _, protection = adapters(sdk_kwargs, sleep)
    with lowercase.lock:
        lowercase.estate.discovered[VAULT.id.lower()] = {NEW_VM_ID.lower()}

    enabled = protection.enable(VAULT, NEW_VM_ID, "rg-app", "vm-new", "DefaultPolicy")

    assert enabled.operation_id and enabled.job_id, enabled
    assert protection.status(SUBSCRIPTION, "westeurope", NEW_VM_ID).protected
    assert not any("refreshContainers" in e.path for e in lowercase.requests.entries())
    assert sleep.waits and set(sleep.waits) == {RETRY_AFTER_S}, "the operation is read every retry-after"


def test_backup_now_reads_the_lowercase_operation_url_and_retry_after(
    lowercase: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    sleep = RecordedWaits(lowercase)
    recovery, _ = adapters(sdk_kwargs, sleep)
    container, item = item_names("rg-app", "vm-old")

    triggered = recovery.trigger_backup(VAULT, container, item, lowercase.now() + timedelta(days=30))

    assert triggered.job_id, triggered
    operations = [e.path for e in lowercase.requests.entries() if "/backupOperations/" in e.path]
    assert operations and {path.rsplit("/", 1)[-1] for path in operations} == {triggered.operation_id}
    assert sleep.waits and set(sleep.waits) == {RETRY_AFTER_S}


# --- pacing --------------------------------------------------------------------------------------
@dataclass
class Paced:
    """A pipeline with the app's quota-logging and pacing policies; its pacer sleeps on a recorded clock."""

    pipeline: Pipeline[Any, Any]
    pacer: Pacer
    clock: RecordedWaits
    url: str


@pytest.fixture
def paced(lowercase: Emulator, emulator_server: EmulatorServer) -> Iterator[Paced]:
    clock = RecordedWaits()
    pacer = Pacer(reads=BucketRate(1000, 50), clock=clock.clock, sleep=clock)
    pipeline: Pipeline[Any, Any] = Pipeline(
        RequestsTransport(connection_verify=emulator_server.ca_bundle),
        policies=[
            BearerTokenCredentialPolicy(StaticTokenCredential("x"), "https://management.azure.com/.default"),
            RateLimitHeaderLogger(),
            PacingPolicy(pacer),
        ],
    )
    url = f"{emulator_server.endpoint}/subscriptions/{SUBSCRIPTION}?api-version=2022-12-01"
    with pipeline:
        yield Paced(pipeline, pacer, clock, url)


def test_pacing_resyncs_to_the_lowercase_remaining_reads_and_logs_them(
    paced: Paced, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="backupwarden.adapters.azure.clients"):
        answer = paced.pipeline.run(HttpRequest("GET", paced.url)).http_response

    assert answer.status_code == 200
    assert "x-ms-ratelimit-remaining-subscription-reads" in list(answer.headers.keys())
    assert paced.pacer.bucket(SUBSCRIPTION, "read").tokens == pytest.approx(249 - RESYNC_MARGIN * 1000), (
        "resynced from 999 down to the server's 249 (less the margin)"
    )
    logged = [r for r in caplog.records if r.getMessage() == "arm quota remaining"]
    assert logged, "the quota header is logged at DEBUG"
    assert logged[-1].quota == {"x-ms-ratelimit-remaining-subscription-reads": "249"}  # type: ignore[attr-defined]


def test_pacing_pauses_for_a_lowercase_retry_after(lowercase: Emulator, paced: Paced) -> None:
    lowercase.faults.add(
        Fault(path_regex=f"^/subscriptions/{SUBSCRIPTION}$", status=429, remaining=1, retry_after_s=7)
    )

    answer = paced.pipeline.run(HttpRequest("GET", paced.url)).http_response
    paced.pacer.bucket(SUBSCRIPTION, "read").acquire()  # the next read of this subscription

    assert answer.status_code == 429 and "retry-after" in list(answer.headers.keys())
    assert paced.clock.waits == [pytest.approx(7)]


# --- storage: the writes on an ETag -------------------------------------------------------------
def test_writes_on_an_etag_read_azurites_lowercase_etag(azurite: str) -> None:
    table = TableClient.from_connection_string(azurite, table_name="headercase")
    table.create_table()
    names: list[str] = []
    entity = {"PartitionKey": "vm", "RowKey": "claim", "attempts": 1}

    with table:
        first = write_on_etag(table, entity, None)
        table.get_entity("vm", "claim", raw_response_hook=lambda r: names.extend(r.http_response.headers))
        second = write_on_etag(table, {**entity, "attempts": 2}, first)
        with pytest.raises(ResourceModifiedError):
            write_on_etag(table, {**entity, "attempts": 3}, first)  # the version it replaced is gone
        table.delete_table()

    assert "etag" in names and "ETag" not in names, names
    assert first and second and first != second


# --- the secure webhook --------------------------------------------------------------------------
def test_the_webhook_reads_a_lowercase_authorization_header(secure_webhook: Webhook, tenant: Tenant) -> None:
    (token,) = tenant.bearer().values()

    response = secure_webhook.post(log_alert(), {"authorization": token})

    assert (response.status_code, secure_webhook.answer(response)) == (202, {"status": "accepted"})
