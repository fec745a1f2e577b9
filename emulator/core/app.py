"""The request pipeline shared by every emulated service.

auth -> api-version -> throttling -> injected faults -> handler -> latency, with
every request logged. Handlers get a `Call` and return a `Reply`; state lives in
the service backends of the `Emulator`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, quote

from emulator.core.clock import Clock, Timeline
from emulator.core.errors import (
    BadRequest,
    InjectedFault,
    InvalidApiVersion,
    InvalidJson,
    MissingApiVersion,
    ServiceError,
    TooManyRequests,
    Unauthorized,
)
from emulator.core.realism import Faults, Latency, LoggedRequest, RequestLog
from emulator.core.router import Route, Router
from emulator.core.throttle import Throttle
from emulator.estate import Estate

logger = logging.getLogger(__name__)

T = TypeVar("T")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    method: str
    path: str
    route: Route
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    base_url: str
    emulator: Emulator

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")

    def json(self) -> Any:
        if not self.raw_body.strip():
            raise InvalidJson("The request content was empty; a JSON body is required.")
        try:
            return json.loads(self.raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJson(
                f"The request content was invalid and could not be deserialized: {exc}."
            ) from exc

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise InvalidJson("The request content must be a JSON object.")
        return body

    def url(self, path: str) -> str:
        # a URL in a header is ASCII: names with other letters go percent-encoded, as ARM sends them
        return self.base_url + quote(path, safe="/;:@!$&'()*+,=~")

    def backend(self, cls: type[T]) -> T:
        return self.emulator.backend(cls)


class Emulator:
    """All emulated state and behaviour; the WSGI callable served over HTTPS."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.lock = threading.RLock()
        self.clock = Clock(scale=time_scale)
        self.timeline = Timeline()
        self.throttle = Throttle()
        self.faults = Faults()
        self.latency = Latency()
        self.requests = RequestLog()
        # Send every response header name lower-case, as HTTP/2 does (RFC 9113 §8.2.1).
        self.lowercase_headers = False
        self.estate = Estate()
        self.router = Router()
        self._backends: dict[type, Any] = {}
        self._services = _load_services()
        for service in self._services:
            self.router.extend(service.routes())
        self._build_backends()

    # --- state -----------------------------------------------------------------
    def _build_backends(self) -> None:
        self._backends = {}
        for service in self._services:
            if service.backend is not None:
                self._backends[service.backend] = service.backend(self)

    def backend(self, cls: type[T]) -> T:
        return cast(T, self._backends[cls])

    def backends(self) -> Iterable[Any]:
        return list(self._backends.values())

    def reset(self) -> None:
        with self.lock:
            self.estate = Estate()
            self.timeline.clear()
            self.throttle = Throttle()
            self.faults.clear()
            self.latency = Latency()
            self.requests.clear()
            self.lowercase_headers = False
            self._build_backends()

    def now(self) -> datetime:
        return self.clock.now()

    def settle(self) -> datetime:
        """Apply every transition due by now; returns now."""
        with self.lock:
            now = self.clock.now()
            self.timeline.settle(now)
            return now

    def advance(self, seconds: float) -> datetime:
        with self.lock:
            self.clock.advance(seconds)
            return self.settle()

    def load_scenario(self, scenario: dict[str, Any]) -> None:
        from emulator.scenario import apply_scenario

        with self.lock:
            self.reset()
            apply_scenario(self, scenario)

    # --- WSGI ------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        # WSGI hands the percent-decoded path over as latin-1 (PEP 3333); ARM reads it as UTF-8
        path = (environ.get("PATH_INFO", "") or "/").encode("latin-1").decode("utf-8", "replace")
        query = {
            k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()
        }
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        body = _read_body(environ)
        base_url = f"{environ.get('wsgi.url_scheme', 'https')}://{environ.get('HTTP_HOST', 'localhost')}"

        route_template, subscription, kind = "", None, "none"
        delay_ms = 0.0
        reset_connection = False
        try:
            route, params = self.router.match(method, path)
            route_template, kind = route.template, route.kind
            subscription = params.get("subscriptionId")
            delay_ms = self.latency.for_route(route.template)
            call = Call(method, path, route, params, query, headers, body, base_url, self)
            reply, reset_connection = self._serve(call)
        except ServiceError as exc:
            reply = Reply(exc.status, exc.body(), dict(exc.headers))
        except Exception:  # the emulator's own bug: answer like ARM, and log it loudly
            logger.exception("emulator failure on %s %s", method, path)
            reply = Reply(500, {"error": {"code": "InternalServerError", "message": "Emulator failure."}})

        self.requests.append(
            LoggedRequest(
                self.clock.now(),
                method,
                path,
                route_template,
                0 if reset_connection else reply.status,
                subscription,
                kind,
            )
        )
        if delay_ms > 0:
            time.sleep(delay_ms / 1000.0)
        if reset_connection:
            _reset(environ)
            start_response("500 Internal Server Error", [("Content-Length", "0"), ("Connection", "close")])
            return [b""]
        return _render(reply, start_response)

    def _serve(self, call: Call) -> tuple[Reply, bool]:
        route = call.route
        if route.auth and not call.headers.get("authorization", "").lower().startswith("bearer "):
            raise Unauthorized()
        if route.api_versions:
            given = call.query.get("api-version")
            if not given:
                raise MissingApiVersion()
            if given not in route.api_versions:
                raise InvalidApiVersion(given, list(route.api_versions))
        extra_headers: dict[str, str] = {}
        with self.lock:
            now = self.settle()
            if route.kind in ("read", "write") and call.params.get("subscriptionId"):
                granted, wait_s, remaining = self.throttle.take(
                    call.params["subscriptionId"], route.kind, now
                )
                if not granted:
                    retry = max(1, self.clock.real_seconds(wait_s)) if wait_s != float("inf") else 60
                    raise TooManyRequests(
                        f"Number of '{route.kind}' requests for subscription "
                        f"'{call.params['subscriptionId']}' exceeded the limit. Try again later.",
                        retry,
                    )
                header = "reads" if route.kind == "read" else "writes"
                extra_headers[f"x-ms-ratelimit-remaining-subscription-{header}"] = str(remaining)
            fault = self.faults.pick(call.method, call.path)
            if fault is not None:
                if fault.lose_answer:
                    _serve_and_forget(route, call)
                    return Reply(500), True
                if fault.status == 0:
                    return Reply(500), True
                raise InjectedFault(fault.status, fault.retry_after_s)
            reply = route.handler(call)
        request_id = str(uuid.uuid4())
        reply.headers = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": call.headers.get("x-ms-client-request-id", request_id),
            **extra_headers,
            **reply.headers,
        }
        return reply, False


def _serve_and_forget(route: Route, call: Call) -> None:
    """The service acts on the request; whatever it answers, error or not, never reaches the client."""
    with contextlib.suppress(ServiceError):
        route.handler(call)


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise BadRequest("Content-Length is not a number.") from exc
    if length <= 0:
        return b""
    stream = environ["wsgi.input"]
    return cast(bytes, stream.read(length))


def _render(reply: Reply, start_response: StartResponse) -> list[bytes]:
    headers = dict(reply.headers)
    if reply.body is None:
        payload = b""
    elif isinstance(reply.body, bytes):
        payload = reply.body
    else:
        payload = json.dumps(reply.body, default=str).encode()
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
    headers["Content-Length"] = str(len(payload))
    reason = _REASONS.get(reply.status, "Status")
    start_response(f"{reply.status} {reason}", list(headers.items()))
    return [payload]


def _reset(environ: dict[str, Any]) -> None:
    """Abort the TCP connection with RST, as a dropped connection looks to a client.

    The shutdown comes first: the handler's reader and writer keep the socket open past close(),
    and without it the answer the pipeline renders afterwards would still reach the client.
    """
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    except OSError:
        pass


@dataclass(frozen=True)
class Service:
    name: str
    routes: Callable[[], list[Route]]
    backend: type | None = None


def _load_services() -> list[Service]:
    from emulator.services import SERVICES

    return list(SERVICES)
