"""Secure webhook: the Entra ID token an action group sends with each alert notification.

When BACKUPWARDEN_WEBHOOK_AUDIENCE is set, every request to `alert_webhook` must carry
`Authorization: Bearer <token>` where the token is
- signed (RS256) by a key the tenant publishes (`jwks_uri` of its OpenID configuration),
- issued by the tenant (v1 `https://sts.windows.net/{tenant}/` or v2 `…/{tenant}/v2.0`),
- for the configured audience (the Entra app the action group's secure webhook names),
- obtained by the action groups service itself (`appid`/`azp` 461e8683-…), and
- carrying the app role `ActionGroupsSecureWebhook`,
- within its validity (exp, nbf), allowing LEEWAY_S of clock skew.

The function key (auth level FUNCTION) is checked by the Functions host before this code runs.

Keys are fetched over HTTPS through azure-core's pipeline with BACKUPWARDEN_CA_BUNDLE as the trust
store, cached for KEYS_TTL_S, and refetched once when a token names a key the cache does not hold
(Entra rolls keys over); unknown keys trigger at most one refetch per UNKNOWN_KEY_REFETCH_S, so a
stream of forged tokens cannot turn into a stream of fetches. The composition root keeps one
`SigningKeys` per process (backupwarden/app.py `build_webhook_validator`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from azure.core import PipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import HeadersPolicy, ProxyPolicy, RetryPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest
from jwt.exceptions import PyJWTError

logger = logging.getLogger(__name__)

ACTION_GROUPS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
WEBHOOK_ROLE = "ActionGroupsSecureWebhook"
ALGORITHM = "RS256"
LEEWAY_S = 60
KEYS_TTL_S = 12 * 3600  # what Microsoft.IdentityModel uses between refreshes of the tenant's metadata
UNKNOWN_KEY_REFETCH_S = 300
FETCH_TIMEOUT_S = 5
FETCH_RETRIES = 2  # a notification must be answered within seconds; the action group retries a 503


class WebhookUnauthorized(Exception):
    """The request carries no acceptable secure-webhook token; `reason` says why (answered with 401)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SigningKeysUnavailable(Exception):
    """The tenant's OpenID configuration or keys could not be fetched (answered with 503; the cause is
    chained). Not the caller's fault, and an action group retries a 503."""


JsonFetcher = Callable[[str], Any]


class HttpsJsonFetcher:
    """GETs a JSON document over HTTPS through azure-core's pipeline (proxy settings, retries)."""

    def __init__(self, connection_verify: str | bool) -> None:
        policies: list[Any] = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(sdk_moniker="backupwarden-webhook"),
            ProxyPolicy(),
            RetryPolicy(retry_total=FETCH_RETRIES, retry_backoff_factor=0.2, retry_backoff_max=1),
        ]
        self._client: PipelineClient[Any, Any] = PipelineClient(
            base_url="", policies=policies, connection_verify=connection_verify
        )

    def __call__(self, url: str) -> Any:
        if not url.lower().startswith("https://"):
            raise SigningKeysUnavailable(f"refusing to fetch keys over anything but https: {url[:200]!r}")
        try:
            response = self._client.send_request(
                HttpRequest("GET", url), connection_timeout=FETCH_TIMEOUT_S, read_timeout=FETCH_TIMEOUT_S
            )
            response.raise_for_status()
            return response.json()
        except (AzureError, ValueError, RecursionError) as exc:  # unreachable, an error status, not JSON
            raise SigningKeysUnavailable(f"cannot fetch {url[:200]}: {exc}") from exc


class SigningKeys:
    """The tenant's token signing keys by `kid`, from its OpenID configuration, cached."""

    def __init__(
        self,
        openid_configuration_url: str,
        fetch: JsonFetcher,
        *,
        ttl_s: float = KEYS_TTL_S,
        unknown_key_refetch_s: float = UNKNOWN_KEY_REFETCH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = openid_configuration_url
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._unknown_key_refetch_s = unknown_key_refetch_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until: float | None = None
        self._last_unknown_key_refetch: float | None = None

    def key(self, kid: str) -> jwt.PyJWK:
        """The key `kid`; raises WebhookUnauthorized when the tenant does not publish it."""
        with self._lock:
            now = self._clock()
            if self._fresh_until is None or now >= self._fresh_until:
                self._refresh_or_keep_stale(now)
            found = self._keys.get(kid)
            if found is None and self._may_refetch_for_unknown_key(now):
                self._last_unknown_key_refetch = now
                logger.info("token names an unknown signing key; refetching the keys", extra={"kid": kid})
                self._refresh_or_keep_stale(now)
                found = self._keys.get(kid)
            if found is None:
                raise WebhookUnauthorized("token signed by a key the tenant does not publish")
            return found

    def _may_refetch_for_unknown_key(self, now: float) -> bool:
        last = self._last_unknown_key_refetch
        return last is None or now - last >= self._unknown_key_refetch_s

    def _refresh_or_keep_stale(self, now: float) -> None:
        try:
            self._keys = self._fetch_keys()
        except SigningKeysUnavailable:
            if not self._keys:
                raise
            # Entra's keys live for weeks: better a stale set than refusing every alert meanwhile;
            # try again after the refetch interval rather than on every request.
            logger.warning("cannot refresh the signing keys; using the cached ones", exc_info=True)
            self._fresh_until = now + min(self._ttl_s, self._unknown_key_refetch_s)
            return
        self._fresh_until = now + self._ttl_s

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        configuration = self._fetch(self._url)
        jwks_uri = configuration.get("jwks_uri") if isinstance(configuration, dict) else None
        if not isinstance(jwks_uri, str):
            raise SigningKeysUnavailable(f"the OpenID configuration at {self._url} names no jwks_uri")
        document = self._fetch(jwks_uri)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise SigningKeysUnavailable(f"{jwks_uri[:200]} is not a JSON Web Key Set")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            parsed = _signing_key(entry)
            if parsed is not None:
                keys[str(entry["kid"])] = parsed
        if not keys:
            raise SigningKeysUnavailable(f"{jwks_uri[:200]} holds no usable RSA signing key")
        logger.info("fetched signing keys", extra={"jwks_uri": jwks_uri, "keys": len(keys)})
        return keys


def _signing_key(entry: Any) -> jwt.PyJWK | None:
    """An RSA signature key of the set, or None for anything else (encryption keys, other types)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
        return None
    try:
        return jwt.PyJWK(entry, algorithm=ALGORITHM)
    except (PyJWTError, ValueError, TypeError) as exc:  # one bad key must not cost the tenant's good ones
        logger.warning(
            "skipped an unreadable signing key", extra={"kid": entry["kid"][:100], "error": str(exc)[:200]}
        )
        return None


class WebhookTokenValidator:
    def __init__(self, audience: str, tenant_id: str, keys: SigningKeys, leeway_s: float = LEEWAY_S) -> None:
        self._audience = audience
        self._issuers = (
            f"https://sts.windows.net/{tenant_id}/",
            f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        )
        self._keys = keys
        self._leeway_s = leeway_s

    def validate(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims; raises WebhookUnauthorized (or SigningKeysUnavailable)."""
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # not three base64url segments, a header that is not JSON, a bad kid
            raise WebhookUnauthorized("malformed bearer token") from None
        if header.get("alg") != ALGORITHM:
            raise WebhookUnauthorized(f"token algorithm {str(header.get('alg'))[:20]!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise WebhookUnauthorized("token header names no signing key (kid)")
        claims = self._decode(token, self._keys.key(kid))
        _check_caller(claims)
        return claims

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuers,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise WebhookUnauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise WebhookUnauthorized("token not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise WebhookUnauthorized("token issued for another audience") from None
        except jwt.InvalidIssuerError:
            raise WebhookUnauthorized("token not issued by the configured tenant") from None
        except jwt.InvalidSignatureError:
            raise WebhookUnauthorized("token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise WebhookUnauthorized(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise WebhookUnauthorized(f"invalid token: {type(exc).__name__}") from None
        return claims


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise WebhookUnauthorized("missing bearer token (secure webhook required)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebhookUnauthorized("the Authorization header is not a bearer token")
    return token.strip()


def _check_caller(claims: dict[str, Any]) -> None:
    # v1 tokens name the client in `appid`, v2 tokens in `azp`: whichever is present must be the service.
    callers = [claims[name] for name in ("appid", "azp") if name in claims]
    if not callers or any(caller != ACTION_GROUPS_APP_ID for caller in callers):
        raise WebhookUnauthorized("token not obtained by the Azure Monitor action groups service")
    roles = claims.get("roles")
    if not isinstance(roles, list) or WEBHOOK_ROLE not in roles:
        raise WebhookUnauthorized(f"token lacks the app role {WEBHOOK_ROLE}")
