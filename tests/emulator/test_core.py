"""The pipeline every route shares: auth, api-version, routing, malformed input, faults, throttling."""

from __future__ import annotations

import json
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import Emulator, EmulatorServer
from tests.emulator.fidelity import shape_differences

AUTH = {"Authorization": "Bearer test"}
SUB = "11111111-1111-4111-8111-111111111111"
VAULTS = f"/subscriptions/{SUB}/providers/Microsoft.RecoveryServices/vaults"


@pytest.fixture
def http(emulator_server: EmulatorServer, emulator: Emulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
    session.verify = emulator_server.ca_bundle
    emulator.load_scenario(
        {"subscriptions": [{"id": SUB, "vaults": [{"name": "v1", "location": "westeurope"}]}]}
    )
    return session


def test_missing_bearer_token_is_401_with_www_authenticate(
    http: requests.Session, emulator_server: EmulatorServer
) -> None:
    answer = http.get(f"{emulator_server.endpoint}{VAULTS}?api-version=2026-11-01")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json()["error"]["code"] == "AuthenticationFailed"


def test_missing_api_version_is_400_as_arm_answers(
    http: requests.Session, emulator_server: EmulatorServer
) -> None:
    answer = http.get(f"{emulator_server.endpoint}{VAULTS}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"


def test_unsupported_api_version_is_400(http: requests.Session, emulator_server: EmulatorServer) -> None:
    answer = http.get(f"{emulator_server.endpoint}{VAULTS}?api-version=1999-01-01", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_unknown_route_is_404_with_arm_error_shape(
    http: requests.Session, emulator_server: EmulatorServer
) -> None:
    answer = http.get(
        f"{emulator_server.endpoint}/subscriptions/{SUB}/providers/Microsoft.Nope/things", headers=AUTH
    )
    assert answer.status_code == 404
    assert set(answer.json()["error"]) >= {"code", "message"}


def test_wrong_method_is_405(http: requests.Session, emulator_server: EmulatorServer) -> None:
    answer = http.delete(f"{emulator_server.endpoint}{VAULTS}?api-version=2026-11-01", headers=AUTH)
    assert answer.status_code == 405
    assert "GET" in answer.headers["Allow"]


def test_malformed_json_is_400(http: requests.Session, emulator_server: EmulatorServer) -> None:
    url = f"{emulator_server.endpoint}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
    answer = http.post(url, data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"]


def test_injected_fault_answers_then_clears(http: requests.Session, emulator_server: EmulatorServer) -> None:
    url = f"{emulator_server.endpoint}{VAULTS}?api-version=2026-11-01"
    http.put(
        f"{emulator_server.endpoint}/_emulator/faults",
        json={"faults": [{"path": "/vaults$", "status": 503, "count": 1, "retry_after_s": 2}]},
    )
    first = http.get(url, headers=AUTH)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert http.get(url, headers=AUTH).status_code == 200


def test_token_bucket_answers_429_with_retry_after(
    http: requests.Session, emulator_server: EmulatorServer, emulator: Emulator
) -> None:
    http.put(
        f"{emulator_server.endpoint}/_emulator/throttle", json={"read": {"capacity": 2, "refill_per_s": 0.5}}
    )
    url = f"{emulator_server.endpoint}{VAULTS}?api-version=2026-11-01"
    # frozen: the bucket refills on the emulated clock, whose scale an earlier test may have left fast,
    # and a loaded machine may take seconds between the three requests
    scale = emulator.clock.scale
    emulator.clock.set(emulator.clock.now(), scale=0)
    try:
        answers = [http.get(url, headers=AUTH) for _ in range(3)]
    finally:
        emulator.clock.set(emulator.clock.now(), scale=scale)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[1].headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    summary = http.get(f"{emulator_server.endpoint}/_emulator/requests").json()
    assert summary["throttled_429"] == 1


def test_clock_advances_through_admin_api(http: requests.Session, emulator_server: EmulatorServer) -> None:
    before = http.get(f"{emulator_server.endpoint}/_emulator/clock").json()["now"]
    after = http.post(f"{emulator_server.endpoint}/_emulator/clock/advance", json={"seconds": 3600}).json()[
        "now"
    ]
    assert after > before
    bad = http.post(f"{emulator_server.endpoint}/_emulator/clock/advance", json={"seconds": "soon"})
    assert bad.status_code == 400


def test_scenario_load_rejects_bad_documents_naming_the_field(
    http: requests.Session, emulator_server: EmulatorServer
) -> None:
    bad = http.put(
        f"{emulator_server.endpoint}/_emulator/scenario", json={"subscriptions": [{"name": "no id"}]}
    )
    assert bad.status_code == 400
    assert "subscriptions[0].id" in bad.json()["error"]["message"]
    good = http.put(f"{emulator_server.endpoint}/_emulator/scenario", json={"name": "demo"})
    assert good.status_code == 204


def test_shape_comparison_reports_missing_keys_and_type_changes() -> None:
    expected = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}]}
    assert shape_differences(expected, {"a": 2, "b": {"c": "y"}, "d": [{"e": False}]}) == []
    problems = shape_differences(expected, {"a": "1", "b": {}, "d": [{"e": 1}]})
    assert problems == [
        "$.a: expected number, got str",
        "$.b.c: missing",
        "$.d[0].e: expected bool, got number",
    ]


_segment = st.text(alphabet=string.ascii_letters + string.digits + "-_.;%~", min_size=1, max_size=20)
_paths = st.lists(_segment, min_size=0, max_size=12).map(lambda parts: "/" + "/".join(parts))
_prefixes = st.sampled_from(
    [
        "",
        f"/subscriptions/{SUB}",
        f"{VAULTS}/v1",
        f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices/vaults/v1",
        "/providers/Microsoft.ResourceGraph",
        "/v1/workspaces",
        "/dataCollectionRules",
        "/_emulator",
    ]
)
_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda v: json.dumps(v).encode(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
            ),
            max_leaves=8,
        ),
    ),
)
_queries = st.sampled_from(
    [
        "",
        "?api-version=2026-10-01",
        "?api-version=2026-11-01",
        "?api-version=2021-03-01",
        "?api-version=2023-01-01",
        "?api-version=garbage",
        "?$filter=status eq",
        "?$skipToken=zz",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "PATCH", "DELETE"]),
    prefix=_prefixes,
    path=_paths,
    query=_queries,
    body=_bodies,
    auth=st.booleans(),
)
def test_no_malformed_request_gets_a_500(
    http: requests.Session,
    emulator_server: EmulatorServer,
    method: str,
    prefix: str,
    path: str,
    query: str,
    body: bytes,
    auth: bool,
) -> None:
    if (prefix + path).lower().startswith("/_emulator"):
        return  # the admin API may legitimately reset state mid-test
    headers = {"Content-Type": "application/json", **(AUTH if auth else {})}
    answer = http.request(
        method, f"{emulator_server.endpoint}{prefix}{path}{query}", data=body, headers=headers
    )
    assert answer.status_code < 500, (method, prefix + path, query, answer.status_code, answer.text[:300])
