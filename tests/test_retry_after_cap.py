"""Retry-After is capped and every Azure call ends within its share of the run's time budget.

A 429 or 503 whose `Retry-After` says a day (or an HTTP date a year out) must not hold a call, or
the ARM pacer's bucket, past BACKUPWARDEN_RETRY_AFTER_MAX; a storm of them must end the call within
`Settings.call_timeout`. The calls go to the emulator over TLS through the clients the app builds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import pytest
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.adapters.azure.clients import AzureClients, build_retry_policy
from backupwarden.adapters.azure.pacing import Pacer, retry_after_s
from backupwarden.app import forget_shared_pacers, process_pacer, run_deadline
from backupwarden.domain.times import Deadline
from backupwarden.settings import Settings, SettingsError
from emulator import Emulator, EmulatorServer
from emulator.core.realism import Fault
from emulator.estate import Subscription

ROOT = Path(__file__).resolve().parents[1]
SUB = "11111111-1111-4111-8111-111111111111"
A_DAY_S = 86_400
GIVE_UP_S = 20.0  # far above what a capped call takes, far below an uncapped Retry-After


@pytest.fixture
def app_env(emulator_server: EmulatorServer, emulator: Emulator) -> dict[str, str]:
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(SUB, "Production"))
    return {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BACKUPWARDEN_ARM_ENDPOINT": emulator_server.endpoint,
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "emulator-token",
        "BACKUPWARDEN_CA_BUNDLE": emulator_server.ca_bundle,
        "BACKUPWARDEN_HTTP_RETRY_TOTAL": "2",
        "BACKUPWARDEN_RETRY_AFTER_MAX": "1s",
    }


@pytest.fixture
def clients(app_env: dict[str, str]) -> Iterator[AzureClients]:
    with AzureClients(Settings.from_env(app_env)) as built:
        yield built


def _within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """`call`'s result (or the exception it raised) and how long it took; fails the test once it has
    taken `seconds` (the call is left to finish in a daemon thread)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # handed to the test, which says what it expects
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"the call was still waiting after {seconds} s"
    return outcome[0], time.monotonic() - started


class FakeClock:
    """Monotonic seconds that move only when something sleeps (or the test moves them)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _served(emulator: Emulator) -> list[int]:
    return [entry.status for entry in emulator.requests.entries() if entry.path == f"/subscriptions/{SUB}"]


# --- the SDK retry policy and the pacer, against the emulator --------------------------------------


def test_a_429_asking_for_a_day_is_retried_after_the_cap(clients: AzureClients, emulator: Emulator) -> None:
    emulator.faults.add(
        Fault(path_regex=f"^/subscriptions/{SUB}$", status=429, remaining=1, retry_after_s=A_DAY_S)
    )

    subscription, took = _within(GIVE_UP_S, lambda: clients.subscriptions().subscriptions.get(SUB))

    assert not isinstance(subscription, Exception), subscription
    assert subscription.subscription_id == SUB
    assert _served(emulator) == [429, 200]
    assert took < 5  # one capped wait of 1 s (the retry policy's), the bucket's pause capped too


def test_a_storm_of_429s_asking_for_a_day_fails_cleanly_after_the_capped_retries(
    clients: AzureClients, emulator: Emulator
) -> None:
    emulator.faults.add(Fault(path_regex=f"^/subscriptions/{SUB}$", status=429, retry_after_s=A_DAY_S))

    error, took = _within(GIVE_UP_S, lambda: clients.subscriptions().subscriptions.get(SUB))

    assert isinstance(error, HttpResponseError) and error.status_code == 429
    assert _served(emulator) == [429, 429, 429]  # the first try and BACKUPWARDEN_HTTP_RETRY_TOTAL=2
    assert took < 8


def test_a_503_storm_ends_the_call_within_its_timeout(app_env: dict[str, str], emulator: Emulator) -> None:
    many_retries = Settings.from_env({**app_env, "BACKUPWARDEN_HTTP_RETRY_TOTAL": "20"})
    # a budget below the setting's minimum keeps the test short: the call's timeout is 2 s
    short = replace(many_retries, time_budget=timedelta(seconds=8))
    emulator.faults.add(Fault(path_regex=f"^/subscriptions/{SUB}$", status=503, retry_after_s=1))

    with AzureClients(short) as clients:
        error, took = _within(GIVE_UP_S, lambda: clients.subscriptions().subscriptions.get(SUB))

    assert isinstance(error, AzureError), error
    assert took < 2 + 1.5  # the timeout, then at most the try that finds it spent
    assert 2 <= len(_served(emulator)) < 21


def test_the_pacers_the_app_builds_cap_their_pauses(app_env: dict[str, str]) -> None:
    settings = Settings.from_env(app_env)
    forget_shared_pacers()
    try:
        assert process_pacer(settings).max_pause_s == 1.0
    finally:
        forget_shared_pacers()
    with AzureClients(settings) as clients:
        assert clients.pacer.max_pause_s == 1.0


class OddRetryAfter(BaseHTTPRequestHandler):
    """Answers 429 with the `Retry-After` in the path the first time it sees that path, then 200."""

    seen: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        first = self.path not in self.seen
        self.seen.add(self.path)
        self.send_response(429 if first else 200)
        if first:
            self.send_header("Retry-After", unquote(self.path.lstrip("/")))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def odd_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OddRetryAfter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("retry_after", ["soon", "inf", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_a_retry_after_that_is_odd_or_endless_is_retried_within_the_cap(
    odd_server: str, app_env: dict[str, str], retry_after: str
) -> None:
    policy = build_retry_policy(Settings.from_env(app_env))
    with Pipeline(RequestsTransport(), policies=[policy]) as pipeline:
        request = HttpRequest("GET", f"{odd_server}/{quote(retry_after)}")
        answer, took = _within(GIVE_UP_S, lambda: pipeline.run(request).http_response)

    assert not isinstance(answer, Exception), answer
    assert answer.status_code == 200
    assert took < 3


# --- the pacer's pauses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["86400", "1e400", "inf", "Wed, 21 Oct 2099 07:28:00 GMT"],
)
def test_the_pacers_pause_is_capped_whatever_retry_after_says(retry_after: str) -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep, max_pause_s=2.0)
    bucket = pacer.bucket(SUB, "read")

    bucket.pause(pacer.pause_s(retry_after_s({"Retry-After": retry_after})))
    bucket.acquire()

    assert clock.waits == [2.0]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40)))
def test_a_pause_is_never_negative_nan_or_above_the_cap(asked: float | str) -> None:
    pacer = Pacer(max_pause_s=5.0)
    seconds = retry_after_s({"Retry-After": str(asked)})
    pause = pacer.pause_s(seconds)
    assert 0.0 <= pause <= 5.0


# --- the settings ------------------------------------------------------------------------------------

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_defaults_fit_within_the_hosts_function_timeout() -> None:
    defaults = Settings.from_env(BASE)
    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    function_timeout = timedelta(hours=hours, minutes=minutes, seconds=seconds)

    assert defaults.retry_after_max == timedelta(seconds=60)
    assert defaults.time_budget == timedelta(minutes=7)
    # a call still in flight when the budget runs out ends before the host stops the run
    assert defaults.time_budget + defaults.call_timeout + defaults.retry_after_max <= function_timeout


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "1s", "retry_after_max", timedelta(seconds=1)),
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "5m", "retry_after_max", timedelta(minutes=5)),
        ("BACKUPWARDEN_TIME_BUDGET", "1m", "time_budget", timedelta(minutes=1)),
        ("BACKUPWARDEN_TIME_BUDGET", "1h", "time_budget", timedelta(hours=1)),
    ],
)
def test_time_settings_within_bounds_are_read(name: str, value: str, field: str, expected: timedelta) -> None:
    assert getattr(Settings.from_env({**BASE, name: value}), field) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "0"),
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "5m1s"),
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "99999999999d"),
        ("BACKUPWARDEN_RETRY_AFTER_MAX", "60"),
        ("BACKUPWARDEN_TIME_BUDGET", "59s"),
        ("BACKUPWARDEN_TIME_BUDGET", "1h1s"),
        ("BACKUPWARDEN_TIME_BUDGET", "1" * 30 + "s"),
        ("BACKUPWARDEN_TIME_BUDGET", "soon"),
    ],
)
def test_time_settings_out_of_bounds_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name}: "):
        Settings.from_env({**BASE, name: value})


def test_a_calls_timeout_is_a_quarter_of_the_budget() -> None:
    settings = Settings.from_env({**BASE, "BACKUPWARDEN_TIME_BUDGET": "8m"})
    assert settings.call_timeout == timedelta(minutes=2)


# --- the run's deadline ------------------------------------------------------------------------------


def test_a_deadline_counts_down_from_its_start_and_says_when_it_is_near() -> None:
    clock = FakeClock()
    deadline = Deadline.start(timedelta(minutes=7), clock)

    assert deadline.started == 1000.0
    assert deadline.remaining() == timedelta(minutes=7)
    assert not deadline.near_end(timedelta(minutes=1))
    clock.now += 6 * 60
    assert deadline.remaining() == timedelta(minutes=1)
    assert deadline.near_end(timedelta(minutes=1))
    clock.now += 3600
    assert deadline.remaining() == timedelta(0)


def test_run_deadline_takes_the_settings_budget() -> None:
    clock = FakeClock()
    deadline = run_deadline(Settings.from_env({**BASE, "BACKUPWARDEN_TIME_BUDGET": "3m"}), clock)
    assert (deadline.started, deadline.budget) == (1000.0, timedelta(minutes=3))
