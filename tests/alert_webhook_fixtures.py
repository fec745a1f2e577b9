"""What the alert webhook tests share: the handler as the host registers it, its settings in the
environment with an own queue and table on Azurite, alert payloads, and a tenant whose signing keys
(JWKS) a tiny HTTPS server publishes.

Import the fixtures into a test module by their function names (`webhook_fixture`, …); tests ask for
them by their fixture names (`webhook`, …).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import jwt
import pytest
import trustme
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives.asymmetric import rsa

from backupwarden.adapters.azure.webhook_token import ACTION_GROUPS_APP_ID, WEBHOOK_ROLE
from backupwarden.flows.remediation.messages import RemediationWorkItem

Handler = Callable[[func.HttpRequest], func.HttpResponse]

SUBSCRIPTION = "11111111-1111-4111-8111-111111111111"
VM_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/web-01"
)
VAULT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-backup-weu/providers/Microsoft.RecoveryServices"
    "/vaults/rsv-prod-weu"
)
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-monitor/providers/Microsoft.OperationalInsights"
    "/workspaces/law-backupwarden"
)
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://backupwarden-alerts"
KIDS = ("key-a", "key-b", "key-x")


def new_alert_id() -> str:
    return f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/{uuid.uuid4()}"


def log_alert(
    alert_id: str | None = None,
    condition: str = "Fired",
    dimensions: tuple[tuple[str, str], ...] = (("VmId", VM_ID), ("ErrorCode", "BackUpOperationFailed")),
) -> dict[str, Any]:
    """A log search alert (V2) notification, after Microsoft's sample for API 2021-08-01 and later."""
    essentials: dict[str, Any] = {
        "alertId": alert_id or new_alert_id(),
        "alertRule": "backupwarden-backup-failed",
        "severity": "Sev1",
        "signalType": "Log",
        "monitorCondition": condition,
        "monitoringService": "Log Alerts V2",
        "alertTargetIDs": [WORKSPACE_ID.lower()],
        "configurationItems": [value for _, value in dimensions],
        "originAlertId": str(uuid.uuid4()),
        "firedDateTime": "2024-05-06T07:10:31.6127254Z",
        "description": "A VM backup or configure-backup job failed.",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2024-05-06T07:25:30.1234567Z"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": None,
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT10M",
                    "allOf": [
                        {
                            "searchQuery": 'BackupJobOutcomes_CL | where Status == "Failed"',
                            "metricMeasureColumn": None,
                            "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                            "operator": "GreaterThan",
                            "threshold": "0",
                            "timeAggregation": "Count",
                            "dimensions": [{"name": name, "value": value} for name, value in dimensions],
                            "metricValue": 1,
                            "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
                            "linkToSearchResultsAPI": "https://api.loganalytics.io/v1/workspaces/x/query",
                        }
                    ],
                    "windowStartTime": "2024-05-06T07:00:00Z",
                    "windowEndTime": "2024-05-06T07:10:00Z",
                },
            },
        },
    }


def backup_alert(alert_id: str | None = None) -> dict[str, Any]:
    """An Azure Backup built-in alert (Azure Monitor based alerts of a Recovery Services vault)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": alert_id or new_alert_id(),
                "alertRule": "Backup Failure",
                "severity": "Sev1",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "monitoringService": "Azure Backup",
                "alertTargetIDs": [VAULT_ID],
                "configurationItems": ["rsv-prod-weu"],
                "originAlertId": str(uuid.uuid4()),
                "firedDateTime": "2024-05-06T07:12:00.0000000Z",
                "description": "Backup failed for web-01",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "properties": {
                    "AffectedResource": VM_ID,
                    "ErrorCode": "UserErrorGuestAgentStatusUnavailable",
                },
            },
        },
    }


def http_request(body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpRequest:
    """What the Functions host hands `alert_webhook` once it accepted the function key."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return func.HttpRequest(
        method="POST",
        url="https://backupwarden.azurewebsites.net/api/alerts",
        headers={"Content-Type": "application/json", **(headers or {})},
        params={},
        route_params={},
        body=raw,
    )


class Webhook:
    """`alert_webhook` with an own remediation queue and de-duplication table on Azurite."""

    def __init__(self, storage: str, handler: Handler) -> None:
        self.storage = storage
        self.handler = handler
        self.queue_name = f"remediate-{uuid.uuid4().hex[:12]}"
        self.table_name = f"alerts{uuid.uuid4().hex[:12]}"

    def env(self) -> dict[str, str]:
        return {
            "AzureWebJobsStorage": self.storage,
            "BACKUPWARDEN_REMEDIATION_QUEUE": self.queue_name,
            "BACKUPWARDEN_ALERT_DEDUP_TABLE": self.table_name,
        }

    def post(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpResponse:
        return self.handler(http_request(body, headers))

    def answer(self, response: func.HttpResponse) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(response.get_body())
        return parsed

    def raw_queue(self) -> QueueClient:
        return QueueClient.from_connection_string(self.storage, self.queue_name)

    def bodies(self) -> list[str]:
        """Every visible message, decoded from base64 as the Functions host's queue trigger reads it."""
        with self.raw_queue() as queue:
            try:
                peeked = queue.peek_messages(max_messages=32)
            except ResourceNotFoundError:
                return []
        return [base64.b64decode(message.content).decode("utf-8") for message in peeked]

    def items(self) -> list[RemediationWorkItem]:
        return [RemediationWorkItem.from_json(body) for body in self.bodies()]

    def message_count(self) -> int:
        with self.raw_queue() as queue:
            try:
                return int(queue.get_queue_properties().approximate_message_count or 0)
            except ResourceNotFoundError:
                return 0

    def table(self) -> TableClient:
        return TableClient.from_connection_string(self.storage, self.table_name)

    def close(self) -> None:
        with self.raw_queue() as queue, contextlib.suppress(ResourceNotFoundError):
            queue.delete_queue()
        with self.table() as table:
            table.delete_table()


@pytest.fixture(name="handlers", scope="session")
def handlers_fixture() -> dict[str, Handler]:
    """The functions the deployed entry point registers, by name (from a fresh import of function_app:
    `FunctionApp.get_functions()` refuses a second call on the same app, and other tests call it too)."""
    import function_app

    app = importlib.reload(function_app).app
    return {fn.get_function_name(): fn.get_user_function() for fn in app.get_functions()}


@pytest.fixture(name="webhook")
def webhook_fixture(
    azurite: str, handlers: dict[str, Handler], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Webhook]:
    """The webhook with its settings in the environment, as the Functions host sets app settings."""
    bench = Webhook(azurite, handlers["alert_webhook"])
    for name, value in bench.env().items():
        monkeypatch.setenv(name, value)
    yield bench
    bench.close()


# --- a tenant that signs tokens and publishes its keys over HTTPS ---------------------------------
class Tenant:
    """Signing keys by kid (only the published ones are in the JWKS) and an HTTPS server on port 0
    that serves the OpenID configuration and the JWKS, counting the requests per document."""

    def __init__(self, directory: Path, keys: dict[str, rsa.RSAPrivateKey]) -> None:
        self.keys = keys
        self.published: list[str] = []
        self.hits: dict[str, int] = {"configuration": 0, "keys": 0}
        self.failing = False  # answer 500 instead of the documents
        authority = trustme.CA()
        self.ca_bundle = str(directory / "tenant-ca.pem")
        authority.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        base = f"https://127.0.0.1:{self._server.server_address[1]}/{TENANT_ID}"
        self.configuration_url = f"{base}/v2.0/.well-known/openid-configuration"
        self.jwks_uri = f"{base}/discovery/v2.0/keys"

    def publish(self, *kids: str) -> None:
        self.published = list(kids)

    def jwks(self) -> dict[str, Any]:
        entries = []
        for kid in self.published:
            entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            entries.append({**entry, "kid": kid, "use": "sig"})
        # Entra also lists keys a validator must skip: here one for encryption.
        extra = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys["key-x"].public_key()))
        entries.append({**extra, "kid": "enc-1", "use": "enc"})
        return {"keys": entries}

    def env(self) -> dict[str, str]:
        return {
            "BACKUPWARDEN_WEBHOOK_AUDIENCE": AUDIENCE,
            "BACKUPWARDEN_TENANT_ID": TENANT_ID,
            "BACKUPWARDEN_OPENID_CONFIGURATION_URL": self.configuration_url,
            "BACKUPWARDEN_CA_BUNDLE": self.ca_bundle,
        }

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A v1 token of the action groups service for the app; an override of None drops the claim."""
        now = int(time.time())
        claims = {
            "aud": AUDIENCE,
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "appid": ACTION_GROUPS_APP_ID,
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{TENANT_ID}/",
            "oid": str(uuid.uuid4()),
            "roles": [WEBHOOK_ROLE],
            "sub": str(uuid.uuid4()),
            "tid": TENANT_ID,
            "ver": "1.0",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str = "key-a", signed_by: str | None = None, **overrides: Any) -> str:
        key = self.keys[signed_by or kid]
        return jwt.encode(self.claims(**overrides), key, algorithm="RS256", headers={"kid": kid})

    def bearer(self, kid: str = "key-a", signed_by: str | None = None, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(kid, signed_by, **overrides)}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tenant = self

        class Documents(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = f"https://{self.headers['Host']}{self.path}"
                if url == tenant.configuration_url:
                    tenant.hits["configuration"] += 1
                    document: dict[str, Any] = {
                        "issuer": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
                        "jwks_uri": tenant.jwks_uri,
                    }
                elif url == tenant.jwks_uri:
                    tenant.hits["keys"] += 1
                    document = tenant.jwks()
                else:
                    self._send(404, {"error": "not found"})
                    return
                self._send(500, {"error": "down"}) if tenant.failing else self._send(200, document)

            def _send(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Documents

    def __enter__(self) -> Tenant:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, rsa.RSAPrivateKey]:
    """key-a is published from the start, key-b after a rollover; key-x never (an attacker's)."""
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in KIDS}


@pytest.fixture(name="tenant")
def tenant_fixture(tmp_path: Path, rsa_keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[Tenant]:
    with Tenant(tmp_path, copy.copy(rsa_keys)) as running:
        running.publish("key-a")
        yield running


@pytest.fixture(name="secure_webhook")
def secure_webhook_fixture(webhook: Webhook, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Webhook:
    """The webhook with secure-webhook tokens required, the keys served by `tenant`."""
    for name, value in tenant.env().items():
        monkeypatch.setenv(name, value)
    return webhook
