"""The one place every Azure SDK client comes from.

Endpoints, credential, CA bundle and retry policy all come from `Settings`, so pointing the
app at the emulator, a recorded-traffic replay or real Azure is configuration only.

Retries (azure-core `RetryPolicy`, read from its source, azure-core 1.41):
- any answer >= 400 carrying `Retry-After` is retried after that many seconds, whatever the
  method (so ARM's 429s are retried for POST too);
- without `Retry-After`: 408, 429, 500, 502, 503, 504 (and >= 506) are retried for
  GET/PUT/DELETE/HEAD/OPTIONS/TRACE; POST/PATCH only on 500, 503, 504;
- connection errors are retried; `retry_status` defaults to 3 in azure-core, so it is raised
  to `retry_total` here to make BACKUPWARDEN_HTTP_RETRY_TOTAL the one number that counts;
- azure-core sleeps whatever `Retry-After` says (`Retry-After: 86400` is a day) and ends retries
  after `timeout` (7 days by default). `BoundedRetryPolicy` caps each wait at
  BACKUPWARDEN_RETRY_AFTER_MAX and within the call's timeout (`Settings.call_timeout`, a share of
  BACKUPWARDEN_TIME_BUDGET), so one call cannot outlive its run. The Storage clients keep their
  SDKs' own retry policies (Azurite and Table Storage do not answer with long `Retry-After`).

Pacing (backupwarden/adapters/azure/pacing.py): every ARM and Resource Graph client carries a `PacingPolicy`
per try, after the rate-limit logger. Its buckets (BACKUPWARDEN_ARM_READ_BUCKET /
BACKUPWARDEN_ARM_WRITE_BUCKET) live in the `Pacer` handed in: the composition root (backupwarden/app.py)
hands every `AzureClients` it builds the one pacer of the process, since ARM's buckets are per
subscription, not per client. Clients built without one pace with buckets of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.data.tables import TableClient
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsQueryClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from backupwarden.adapters.azure.pacing import BucketRate, Pacer, PacingPolicy
from backupwarden.domain.arm_ids import arm_key
from backupwarden.settings import CredentialKind, Settings, SettingsError

logger = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")

RETRY_BACKOFF_FACTOR_S = 0.8
RETRY_BACKOFF_MAX_S = 60
CONNECTION_POOL_SIZE = 64  # kept-alive connections per host and client: above the sweep's worker threads
_STATIC_TOKEN_EXPIRES_ON = 4102444800  # 2100-01-01: a static token never refreshes


class StaticTokenCredential:
    """A fixed bearer token for every scope: for the emulator and recorded-traffic replays."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, _STATIC_TOKEN_EXPIRES_ON)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, _STATIC_TOKEN_EXPIRES_ON)

    def close(self) -> None:
        pass


class RateLimitHeaderLogger(SansIOHTTPPolicy[Any, Any]):
    """Logs ARM's remaining-quota headers (`x-ms-ratelimit-remaining-*`) at DEBUG, once per try."""

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        headers = response.http_response.headers
        remaining = {name.lower(): value for name, value in headers.items() if _is_quota_header(name)}
        if remaining:
            logger.debug(
                "arm quota remaining",
                extra={
                    "status": response.http_response.status_code,
                    "url_path": request.http_request.url.split("?", 1)[0],
                    "quota": remaining,
                },
            )


def _is_quota_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("x-ms-ratelimit-remaining-") or lowered.startswith("x-ms-user-quota-")


def build_credential(settings: Settings) -> TokenCredential:
    if settings.credential is CredentialKind.STATIC_TOKEN:
        if not settings.static_token:
            raise SettingsError(
                "BACKUPWARDEN_STATIC_TOKEN: missing; required when BACKUPWARDEN_CREDENTIAL=static-token"
            )
        return StaticTokenCredential(settings.static_token)
    # BACKUPWARDEN_CA_BUNDLE is for the Azure API endpoints; token requests keep the system store.
    return DefaultAzureCredential()


class AzureClients:
    """Builds, caches (per subscription) and closes every SDK client backupwarden uses."""

    def __init__(
        self, settings: Settings, credential: TokenCredential | None = None, pacer: Pacer | None = None
    ) -> None:
        self.settings = settings
        self._credential = credential
        self.pacer = pacer or Pacer(
            BucketRate(*settings.arm_read_bucket),
            BucketRate(*settings.arm_write_bucket),
            max_pause_s=settings.retry_after_max.total_seconds(),
        )
        self._owns_credential = credential is None  # a credential handed in is closed by its owner
        self._clients: dict[tuple[str, str], Any] = {}
        self._ensured: set[str] = set()
        self._lock = threading.RLock()  # reentrant: building a client reads self.credential

    # --- ARM ---------------------------------------------------------------------------------
    def subscriptions(self) -> SubscriptionClient:
        return self._cached("subscriptions", "", lambda: SubscriptionClient(**self._arm_kwargs()))

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        return self._cached(
            "compute",
            subscription_id,
            lambda: ComputeManagementClient(subscription_id=subscription_id, **self._arm_kwargs()),
        )

    def recovery_services(self, subscription_id: str) -> RecoveryServicesClient:
        return self._cached(
            "recovery_services",
            subscription_id,
            lambda: RecoveryServicesClient(subscription_id=subscription_id, **self._arm_kwargs()),
        )

    def backup(self, subscription_id: str) -> RecoveryServicesBackupClient:
        return self._cached(
            "backup",
            subscription_id,
            lambda: RecoveryServicesBackupClient(subscription_id=subscription_id, **self._arm_kwargs()),
        )

    def resource_graph(self) -> ResourceGraphClient:
        endpoint = self.settings.resource_graph_endpoint
        return self._cached(
            "resource_graph", "", lambda: ResourceGraphClient(**self._arm_kwargs(base_url=endpoint))
        )

    # --- Azure Monitor ---------------------------------------------------------------------------
    def logs_ingestion(self, endpoint: str | None = None) -> LogsIngestionClient:
        """A client for a data collection endpoint (DCE); default BACKUPWARDEN_LOGS_INGESTION_ENDPOINT."""
        dce = endpoint or self.settings.logs_ingestion_endpoint
        if not dce:
            raise SettingsError("BACKUPWARDEN_LOGS_INGESTION_ENDPOINT: missing; needed to send logs")
        return self._cached(
            "logs_ingestion", dce, lambda: LogsIngestionClient(endpoint=dce, **self._common_kwargs())
        )

    def logs_query(self, endpoint: str | None = None) -> LogsQueryClient:
        """A Log Analytics query client; default BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT."""
        target = endpoint or self.settings.log_analytics_endpoint
        return self._cached(
            "logs_query", target, lambda: LogsQueryClient(endpoint=target, **self._common_kwargs())
        )

    # --- Storage -----------------------------------------------------------------------------
    def ledger_table(self) -> TableClient:
        """The ledger's table: by connection string (Azurite, keys) or by identity (table service URI)."""
        return self._cached(
            "table", self.settings.ledger_table, lambda: self._build_table(self.settings.ledger_table)
        )

    def outbox_table(self) -> TableClient:
        """The outbox of Log Analytics records waiting for upload (same storage account as the ledger)."""
        return self._cached(
            "table", self.settings.outbox_table, lambda: self._build_table(self.settings.outbox_table)
        )

    def alert_dedup_table(self) -> TableClient:
        """The alert notifications `alert_webhook` took in: de-duplicates the action group's retries."""
        name = self.settings.alert_dedup_table
        return self._cached("table", name, lambda: self._build_table(name))

    def _build_table(self, table_name: str) -> TableClient:
        settings = self.settings
        retry = {
            **_retry_kwargs(settings.http_retry_total),
            "transport": pooled_transport(settings.connection_verify),
        }
        if settings.storage_connection_string:
            return TableClient.from_connection_string(
                settings.storage_connection_string, table_name=table_name, **retry
            )
        if not settings.storage_table_uri:
            raise SettingsError("AzureWebJobsStorage: missing; no connection string and no table service URI")
        return TableClient(
            endpoint=settings.storage_table_uri,
            table_name=table_name,
            credential=self.credential,
            connection_verify=settings.connection_verify,
            **retry,
        )

    def work_queue(self, name: str) -> QueueClient:
        """A Storage queue whose messages the Functions queue trigger reads (base64, the host's default)."""
        return self._cached("work_queue", name, lambda: self._build_queue(name))

    def _build_queue(self, name: str) -> QueueClient:
        settings = self.settings
        codecs: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            "transport": pooled_transport(settings.connection_verify),
            **_retry_kwargs(settings.http_retry_total),
        }
        if settings.storage_connection_string:
            return QueueClient.from_connection_string(settings.storage_connection_string, name, **codecs)
        if not settings.storage_queue_uri:
            raise SettingsError("AzureWebJobsStorage: missing; no connection string and no queue service URI")
        return QueueClient(
            settings.storage_queue_uri,
            name,
            credential=self.credential,
            connection_verify=settings.connection_verify,
            **codecs,
        )

    # --- shared ------------------------------------------------------------------------------
    @property
    def credential(self) -> TokenCredential:
        with self._lock:
            if self._credential is None:
                self._credential = build_credential(self.settings)
            return self._credential

    def ensure_once(self, what: str, ensure: Callable[[], None]) -> None:
        """Run `ensure` (create a table or queue if missing) the first time `what` is asked for on
        these clients; a try that raised counts for nothing."""
        with self._lock:
            if what in self._ensured:
                return
        ensure()  # outside the lock: a round trip; two threads may both ensure, which is harmless
        with self._lock:
            self._ensured.add(what)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            self._ensured.clear()
            owned = self._credential if self._owns_credential else None
            if self._owns_credential:
                self._credential = None
        for client in clients:
            client.close()
        close_credential = getattr(owned, "close", None)
        if close_credential is not None:
            close_credential()

    def __enter__(self) -> AzureClients:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _cached(self, kind: str, key: str, build: Callable[[], ClientT]) -> ClientT:
        cache_key = (kind, arm_key(key))
        with self._lock:
            if cache_key not in self._clients:
                self._clients[cache_key] = build()
            client: ClientT = self._clients[cache_key]
            return client

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "connection_verify": self.settings.connection_verify,
            "transport": pooled_transport(self.settings.connection_verify),
            "retry_policy": build_retry_policy(self.settings),
            "per_retry_policies": [RateLimitHeaderLogger()],
        }

    def _arm_kwargs(self, base_url: str | None = None) -> dict[str, Any]:
        endpoint = base_url or self.settings.arm_endpoint
        # The token audience follows the ARM endpoint, which also covers sovereign clouds.
        common = self._common_kwargs()
        return {
            **common,
            "per_retry_policies": [*common["per_retry_policies"], PacingPolicy(self.pacer)],
            "base_url": endpoint,
            "credential_scopes": [f"{self.settings.arm_endpoint}/.default"],
        }


class _NoNetrcAuth(requests.auth.AuthBase):
    """Stands for "~/.netrc has nothing for this host": leaves the request as it is."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_NETRC_AUTH = _NoNetrcAuth()


class SteadyEnvironmentSession(requests.Session):
    """A requests session that reads the proxy environment and ~/.netrc once per host, not on every
    request.

    requests scans the whole of os.environ twice per request for proxy variables (about 0.5 ms of
    CPU, a quarter of a Table Storage call's) and looks for ~/.netrc and ~/_netrc on disk (two file
    system calls, each giving up the GIL to 31 other busy threads in a sweep drain); neither the
    environment nor those files change while the app runs. Explicit `proxies` still go through
    requests' own merge.
    """

    def __init__(self) -> None:
        super().__init__()
        self._merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._merged_lock = threading.Lock()
        self._netrc: dict[str, Any] = {}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            # a truthy auth keeps requests from reading the files again; found credentials are
            # applied as requests would apply them
            request.auth = self._netrc_auth(str(request.url))
        return super().prepare_request(request)

    def _netrc_auth(self, url: str) -> Any:
        host = urlsplit(url).netloc
        found = self._netrc.get(host)
        if found is None:
            found = requests.utils.get_netrc_auth(url) or _NO_NETRC_AUTH
            self._netrc[host] = found  # a dict store is atomic; two threads may both look once
        return found

    def merge_environment_settings(  # returns requests' settings mapping (proxies, stream, verify, cert)
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if not self.trust_env or proxies:
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, stream, verify, tuple(cert) if isinstance(cert, list) else cert)
        with self._merged_lock:
            found = self._merged.get(key)
        if found is None:
            found = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            with self._merged_lock:
                self._merged[key] = found
        return {**found, "proxies": dict(found.get("proxies") or {})}


def pooled_transport(connection_verify: str | bool) -> RequestsTransport:
    """azure-core's requests transport with room for CONNECTION_POOL_SIZE kept-alive connections per host.

    requests keeps 10 by default: with more threads on one client (the sweep's workers), every
    connection past the 10th is closed after its request and the next one pays a new TLS handshake.
    """
    session = SteadyEnvironmentSession()
    no_retries = Retry(total=False, redirect=False, raise_on_status=False)  # azure-core's RetryPolicy retries
    adapter = HTTPAdapter(pool_maxsize=CONNECTION_POOL_SIZE, max_retries=no_retries)
    for scheme in ("https://", "http://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, connection_verify=connection_verify)


class BoundedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's RetryPolicy whose waits end within the call's `timeout`, each at most
    `retry_after_max_s` whatever `Retry-After` asks.

    After its last wait the next try finds the timeout spent and raises azure-core's
    ServiceResponseTimeoutError (an AzureError), as any failed call does.
    """

    def __init__(self, *, retry_after_max_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after_max_s = retry_after_max_s

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        try:
            asked = super().get_retry_after(response)
        except ValueError:  # neither seconds nor an HTTP date: the backoff applies
            return None
        return None if asked is None else min(asked, self.retry_after_max_s)

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings = super().configure_retries(options)
        settings["ends_at"] = time.monotonic() + settings["timeout"]
        return settings

    def sleep(
        self,
        settings: dict[str, Any],
        transport: HttpTransport[Any, Any],
        response: PipelineResponse[Any, Any] | None = None,
    ) -> None:
        retry_after = self.get_retry_after(response) if response is not None else None
        wait = retry_after or self.get_backoff_time(settings)
        wait = min(wait, settings["ends_at"] - time.monotonic())
        if wait > 0:
            transport.sleep(wait)


def build_retry_policy(settings: Settings) -> BoundedRetryPolicy:
    return BoundedRetryPolicy(
        retry_after_max_s=settings.retry_after_max.total_seconds(),
        timeout=settings.call_timeout.total_seconds(),
        **_retry_kwargs(settings.http_retry_total),
    )


def _retry_kwargs(retry_total: int) -> dict[str, Any]:
    return {
        "retry_total": retry_total,
        "retry_status": retry_total,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR_S,
        "retry_backoff_max": RETRY_BACKOFF_MAX_S,
    }
