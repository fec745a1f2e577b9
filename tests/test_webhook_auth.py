"""The secure webhook: Entra ID tokens signed by a test tenant whose OpenID configuration and keys (JWKS) a
local HTTPS server publishes (its CA trusted through BACKUPWARDEN_CA_BUNDLE), checked by `alert_webhook`
as the Functions host calls it, and the key cache on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backupwarden.adapters.azure.webhook_token import (
    KEYS_TTL_S,
    HttpsJsonFetcher,
    SigningKeys,
    SigningKeysUnavailable,
    WebhookUnauthorized,
)
from tests.alert_webhook_fixtures import (
    TENANT_ID,
    Tenant,
    Webhook,
    handlers_fixture,  # noqa: F401
    log_alert,
    rsa_keys,  # noqa: F401
    secure_webhook_fixture,  # noqa: F401
    tenant_fixture,  # noqa: F401
    webhook_fixture,  # noqa: F401
)

V2_ISSUER = f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
KEYS_UNAVAILABLE = {
    "status": "unavailable",
    "reason": "the tenant's token signing keys cannot be fetched right now",
}


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_unauthorized(webhook: Webhook, headers: dict[str, str], reason: str) -> None:
    before = webhook.message_count()

    response = webhook.post(log_alert(), headers)

    assert response.status_code == 401
    assert webhook.answer(response) == {"status": "unauthorized", "reason": reason}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert webhook.message_count() == before


def test_a_good_v1_token_is_accepted(secure_webhook: Webhook, tenant: Tenant) -> None:
    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert (response.status_code, secure_webhook.answer(response)) == (202, {"status": "accepted"})
    assert secure_webhook.message_count() == 1


def test_a_good_v2_token_is_accepted(secure_webhook: Webhook, tenant: Tenant) -> None:
    headers = tenant.bearer(iss=V2_ISSUER, appid=None, azp="461e8683-5575-4561-ac7f-899cc907d62a", ver="2.0")

    response = secure_webhook.post(log_alert(), headers)

    assert (response.status_code, secure_webhook.answer(response)) == (202, {"status": "accepted"})


def test_expiry_allows_a_minute_of_clock_skew(secure_webhook: Webhook, tenant: Tenant) -> None:
    now = int(time.time())
    just_expired = tenant.bearer(exp=now - 30, iat=now - 3600, nbf=now - 3600)
    long_expired = tenant.bearer(exp=now - 120, iat=now - 3600, nbf=now - 3600)

    assert secure_webhook.post(log_alert(), just_expired).status_code == 202
    assert_unauthorized(secure_webhook, long_expired, "token expired")


OTHER_TENANT = "0d7c1f11-2b9e-4f0e-8b54-6d1f3a2c9e77"
BAD_TOKENS = [
    pytest.param(
        {"iss": f"https://sts.windows.net/{OTHER_TENANT}/"},
        "token not issued by the configured tenant",
        id="other-tenant",
    ),
    pytest.param(
        {"iss": "https://evil.example/"}, "token not issued by the configured tenant", id="other-issuer"
    ),
    pytest.param({"aud": "api://someone-else"}, "token issued for another audience", id="wrong-audience"),
    pytest.param(
        {"appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"},
        "token not obtained by the Azure Monitor action groups service",
        id="wrong-appid",
    ),
    pytest.param(
        {"appid": None}, "token not obtained by the Azure Monitor action groups service", id="no-appid"
    ),
    pytest.param(
        {"azp": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"},
        "token not obtained by the Azure Monitor action groups service",
        id="appid-and-other-azp",
    ),
    pytest.param({"roles": None}, "token lacks the app role ActionGroupsSecureWebhook", id="no-roles"),
    pytest.param(
        {"roles": ["Reader"]}, "token lacks the app role ActionGroupsSecureWebhook", id="other-role"
    ),
    pytest.param(
        {"roles": "ActionGroupsSecureWebhook"},
        "token lacks the app role ActionGroupsSecureWebhook",
        id="role-not-a-list",
    ),
    pytest.param({"exp": int(time.time()) - 3600}, "token expired", id="expired"),
    pytest.param(
        {"nbf": int(time.time()) + 3600}, "token not valid yet (nbf/iat in the future)", id="not-yet"
    ),
    pytest.param({"exp": None}, "token lacks the 'exp' claim", id="no-exp"),
    pytest.param({"aud": None}, "token lacks the 'aud' claim", id="no-aud"),
]


@pytest.mark.parametrize(("claims", "reason"), BAD_TOKENS)
def test_a_token_with_a_wrong_claim_is_refused(
    secure_webhook: Webhook, tenant: Tenant, claims: dict[str, Any], reason: str
) -> None:
    assert_unauthorized(secure_webhook, tenant.bearer(**claims), reason)


def test_a_forged_signature_is_refused(secure_webhook: Webhook, tenant: Tenant) -> None:
    forged = tenant.bearer(kid="key-a", signed_by="key-x")  # names the tenant's key, signed by another

    assert_unauthorized(secure_webhook, forged, "token signature does not verify")


def test_a_tampered_token_is_refused(secure_webhook: Webhook, tenant: Tenant) -> None:
    header, _, signature = tenant.token().split(".")
    other = tenant.token(aud="api://someone-else").split(".")[1]
    tampered = {"Authorization": f"Bearer {header}.{other}.{signature}"}

    assert_unauthorized(secure_webhook, tampered, "token signature does not verify")


def test_a_token_signed_with_the_public_key_as_hmac_secret_is_refused(
    secure_webhook: Webhook, tenant: Tenant
) -> None:
    # The classic algorithm confusion: HS256 keyed with the (public) RSA key a naive validator would use.
    public_pem = (
        tenant.keys["key-a"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _base64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-a"}).encode())
    payload = _base64url(json.dumps(tenant.claims()).encode())
    signature = _base64url(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    confused = f"{header}.{payload}.{signature}"

    assert_unauthorized(
        secure_webhook, {"Authorization": f"Bearer {confused}"}, "token algorithm 'HS256' is not RS256"
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing bearer token (secure webhook required)"),
        ({"Authorization": "   "}, "missing bearer token (secure webhook required)"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "the Authorization header is not a bearer token"),
        ({"Authorization": "Bearer"}, "the Authorization header is not a bearer token"),
        ({"Authorization": "Bearer not.a.jwt"}, "malformed bearer token"),
    ],
)
def test_a_missing_or_malformed_token_is_refused(
    secure_webhook: Webhook, headers: dict[str, str], reason: str
) -> None:
    assert_unauthorized(secure_webhook, headers, reason)


def _token_with_header(header: Any, signature: str = "c2ln") -> dict[str, str]:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return {"Authorization": f"Bearer {_base64url(raw)}.{_base64url(b'{}')}.{signature}"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Authorization": "Bearer a.b"}, "malformed bearer token"),
        ({"Authorization": "Bearer a.b.c.d"}, "malformed bearer token"),
        ({"Authorization": "Bearer !!!.e30.c2ln"}, "malformed bearer token"),
        ({"Authorization": "Bearer \u00e9.\u00e9.\u00e9"}, "malformed bearer token"),
        (_token_with_header(b"not json"), "malformed bearer token"),
        (_token_with_header(b"\xff\xfe"), "malformed bearer token"),
        (_token_with_header(["RS256"]), "malformed bearer token"),
        (_token_with_header(b'{"alg": "RS256", "x": 1' + b"0" * 5000 + b"}"), "malformed bearer token"),
        (_token_with_header(b"[" * 5000 + b"]" * 5000), "malformed bearer token"),
        (_token_with_header({"alg": "RS256", "kid": 5}), "malformed bearer token"),
        (_token_with_header({"alg": "RS256", "kid": None}), "malformed bearer token"),
        (_token_with_header({"alg": "RS256", "kid": {"x": 1}}), "malformed bearer token"),
        (_token_with_header({"alg": "RS256", "kid": "key-a", "crit": ["exp"]}), "malformed bearer token"),
        (_token_with_header({"alg": "RS256", "kid": "key-a", "crit": "x"}), "malformed bearer token"),
        (_token_with_header({"alg": "none", "kid": "key-a"}, ""), "token algorithm 'none' is not RS256"),
        (
            _token_with_header({"alg": ["RS256"], "kid": "key-a"}),
            "token algorithm \"['RS256']\" is not RS256",
        ),
        (_token_with_header({"alg": "RS256", "kid": ""}), "token header names no signing key (kid)"),
    ],
)
def test_an_unparseable_token_is_refused(
    secure_webhook: Webhook, headers: dict[str, str], reason: str
) -> None:
    assert_unauthorized(secure_webhook, headers, reason)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
HEADERS = st.fixed_dictionaries(
    {}, optional={"alg": JSON_VALUES | st.just("RS256"), "kid": JSON_VALUES}
).flatmap(
    lambda fixed: st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3).map(
        lambda extra: {**extra, **fixed}
    )
)
TOKENS = (
    st.text(max_size=60)
    | st.lists(st.text(alphabet="abcAZ09-_=.+/ ", max_size=20), min_size=1, max_size=5).map(".".join)
    | st.builds(
        lambda header, tail: f"{_base64url(json.dumps(header).encode())}.{tail}",
        HEADERS,
        st.text(max_size=20),
    )
    | st.builds(lambda raw: f"{_base64url(raw)}.e30.c2ln", st.binary(max_size=40))
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=TOKENS)
def test_any_unparseable_token_is_a_401(secure_webhook: Webhook, token: str) -> None:
    response = secure_webhook.post(log_alert(), {"Authorization": f"Bearer {token}"})

    assert response.status_code == 401, secure_webhook.answer(response)
    assert secure_webhook.answer(response)["status"] == "unauthorized"


def test_a_token_without_a_key_id_is_refused(secure_webhook: Webhook, tenant: Tenant) -> None:
    token = jwt.encode(tenant.claims(), tenant.keys["key-a"], algorithm="RS256")

    assert_unauthorized(
        secure_webhook, {"Authorization": f"Bearer {token}"}, "token header names no signing key (kid)"
    )


def test_the_token_is_checked_before_the_body(secure_webhook: Webhook) -> None:
    response = secure_webhook.post(b"not json")

    assert response.status_code == 401


def test_without_an_audience_no_token_is_needed(webhook: Webhook, tenant: Tenant) -> None:
    response = webhook.post(log_alert())

    assert response.status_code == 202
    assert tenant.hits == {"configuration": 0, "keys": 0}


# --- the keys: fetched once, refetched on rollover -----------------------------------------------
def test_the_keys_are_fetched_once_for_many_requests(secure_webhook: Webhook, tenant: Tenant) -> None:
    statuses = [secure_webhook.post(log_alert(), tenant.bearer()).status_code for _ in range(6)]

    assert statuses == [202] * 6
    assert tenant.hits == {"configuration": 1, "keys": 1}


def test_an_unknown_key_triggers_one_refetch(secure_webhook: Webhook, tenant: Tenant) -> None:
    assert secure_webhook.post(log_alert(), tenant.bearer()).status_code == 202
    tenant.publish("key-a", "key-b")  # Entra rolled its keys over

    rolled = secure_webhook.post(log_alert(), tenant.bearer(kid="key-b"))
    assert rolled.status_code == 202
    assert tenant.hits == {"configuration": 2, "keys": 2}

    for _ in range(3):  # forged tokens naming keys nobody publishes do not turn into fetches
        assert_unauthorized(
            secure_webhook, tenant.bearer(kid="key-x"), "token signed by a key the tenant does not publish"
        )
    assert tenant.hits == {"configuration": 2, "keys": 2}


def test_keys_out_of_reach_are_answered_503(secure_webhook: Webhook, tenant: Tenant) -> None:
    tenant.failing = True

    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert response.status_code == 503  # the action group retries a 503
    assert response.headers["Retry-After"] == "30"
    assert secure_webhook.answer(response) == KEYS_UNAVAILABLE
    assert secure_webhook.message_count() == 0


def test_the_503_names_no_host_or_port_and_the_log_has_the_detail(
    secure_webhook: Webhook, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    tenant.failing = True
    port = tenant.configuration_url.split(":")[2].split("/")[0]

    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert response.status_code == 503
    body = response.get_body().decode()
    assert "127.0.0.1" not in body and port not in body
    assert any(
        getattr(r, "reason", "").startswith(f"cannot fetch https://127.0.0.1:{port}/") for r in caplog.records
    )


def test_keys_from_a_server_the_ca_bundle_does_not_trust_are_not_fetched(
    secure_webhook: Webhook, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BACKUPWARDEN_CA_BUNDLE")  # the system store does not know the test CA

    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert response.status_code == 503
    assert secure_webhook.answer(response) == KEYS_UNAVAILABLE
    assert any("CERTIFICATE_VERIFY_FAILED" in getattr(r, "reason", "") for r in caplog.records)
    assert tenant.hits == {"configuration": 0, "keys": 0}


# --- a key set holding keys nobody can use -------------------------------------------------------
def _serve_also(tenant: Tenant, monkeypatch: pytest.MonkeyPatch, *entries: Any, only: bool = False) -> None:
    """The tenant's JWKS with `entries` listed first (`only`: instead of its keys)."""
    published = tenant.jwks
    monkeypatch.setattr(tenant, "jwks", lambda: {"keys": [*entries, *([] if only else published()["keys"])]})


def _jwk(kid: str, tenant: Tenant) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(tenant.keys[kid].public_key()))
    return {**entry, "kid": kid, "use": "sig"}


def _malformed_keys(tenant: Tenant) -> list[Any]:
    good = _jwk("key-b", tenant)
    return [
        {**good, "kid": "bad-n", "n": "!!not base64!!"},
        {**good, "kid": "short-n", "n": "a"},
        {**good, "kid": "bad-e", "e": 65537},
        {**good, "kid": "no-n", "n": None},
        {key: value for key, value in good.items() if key != "e"} | {"kid": "no-e"},
        {**good, "kid": "key-a", "n": "AQAB"},  # a broken twin of a good key
        {**good, "kid": "ec", "kty": "EC"},
        {**good, "kid": "list-n", "n": ["x"]},
        {"kid": "bare"},
        {**good, "kid": 7},
        "not an object",
    ]


def test_a_malformed_key_beside_good_ones_is_skipped(
    secure_webhook: Webhook, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_also(tenant, monkeypatch, *_malformed_keys(tenant))

    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert (response.status_code, secure_webhook.answer(response)) == (202, {"status": "accepted"})
    assert_unauthorized(
        secure_webhook,
        tenant.bearer(kid="bad-n", signed_by="key-b"),
        "token signed by a key the tenant does not publish",
    )


def test_a_key_set_without_a_usable_key_is_answered_503(
    secure_webhook: Webhook, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve_also(tenant, monkeypatch, *_malformed_keys(tenant), only=True)

    response = secure_webhook.post(log_alert(), tenant.bearer())

    assert (response.status_code, secure_webhook.answer(response)) == (503, KEYS_UNAVAILABLE)
    assert response.headers["Retry-After"] == "30"
    assert secure_webhook.message_count() == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_refreshes_after_its_ttl_and_keeps_stale_keys_when_the_tenant_is_down(
    tenant: Tenant,
) -> None:
    clock = FakeClock()
    keys = SigningKeys(tenant.configuration_url, HttpsJsonFetcher(tenant.ca_bundle), clock=clock)

    keys.key("key-a")
    clock.now += KEYS_TTL_S - 1
    keys.key("key-a")
    assert tenant.hits == {"configuration": 1, "keys": 1}

    clock.now += 1
    keys.key("key-a")
    assert tenant.hits == {"configuration": 2, "keys": 2}

    tenant.failing = True
    clock.now += KEYS_TTL_S
    assert keys.key("key-a").key_id == "key-a", "stale keys beat refusing every alert"
    attempts = tenant.hits["configuration"]
    assert attempts > 2
    clock.now += 1
    keys.key("key-a")
    assert tenant.hits["configuration"] == attempts, (
        "no new attempt on every request while the tenant is down"
    )


def test_the_cache_skips_keys_not_meant_for_signatures(tenant: Tenant) -> None:
    keys = SigningKeys(tenant.configuration_url, HttpsJsonFetcher(tenant.ca_bundle))

    with pytest.raises(WebhookUnauthorized):
        keys.key("enc-1")  # published with "use": "enc"


def test_keys_are_never_fetched_over_plain_http(tenant: Tenant) -> None:
    plain = tenant.jwks_uri.replace("https://", "http://")

    with pytest.raises(SigningKeysUnavailable) as raised:
        HttpsJsonFetcher(tenant.ca_bundle)(plain)
    assert str(raised.value).startswith("refusing to fetch keys over anything but https")
    assert tenant.hits == {"configuration": 0, "keys": 0}


def test_a_jwks_uri_over_http_in_the_configuration_is_refused(tenant: Tenant) -> None:
    fetch = HttpsJsonFetcher(tenant.ca_bundle)

    def configuration_naming_plain_http(url: str) -> Any:
        document = fetch(url)
        return {**document, "jwks_uri": tenant.jwks_uri.replace("https://", "http://")}

    keys = SigningKeys(tenant.configuration_url, configuration_naming_plain_http)

    with pytest.raises(SigningKeysUnavailable) as raised:
        keys.key("key-a")
    assert str(raised.value).startswith("refusing to fetch keys over anything but https")
    assert tenant.hits == {"configuration": 1, "keys": 0}
