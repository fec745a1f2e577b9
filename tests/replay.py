"""A replay of recorded Azure traffic over HTTPS: the server contract tests point the real SDK clients at.

Hand-written because no library does this job here: vcrpy replays inside the process by patching
the HTTP library (the SDK's transport, TLS and retry policies never see the bytes), and the Azure
SDK's test proxy is a .NET tool that reads only its own recording format. This server speaks HTTPS
on 127.0.0.1 with a throw-away CA (trustme, as the emulator does), so every request goes through
the project's own `AzureClients`: pipeline, retries, pacing, deserialisation.

It answers each request with the first unused recorded interaction of the same
- method,
- path: URL-decoded and compared case-insensitively (ARM paths are case-insensitive; the recorded
  `;` of item names arrive encoded as `%3B`),
- `$filter` of the query, URL-decoded (the SDK and the CLI encode spaces differently);
other query parameters (api-version, $expand, the signed t/c/s/h of operation URLs) are ignored,
since the SDK version sending the request decides them, not the adapter. Repeated requests get the
recorded answers in recorded order (a poll sees 202, 202, then 204), each answer once.

Answers carry the recorded status and the recorded header names exactly as recorded (the Azure CLI
recorder lower-cased them; HTTP/2 answers and proxies do the same), except the framing headers
(Content-Length, Transfer-Encoding, Connection, Content-Encoding), which describe the bytes this
server sends, and `https://management.azure.com` in `Location` / `Azure-AsyncOperation` is replaced
by this server's own address so the client follows the operation here.

A request no interaction matches gets 501 (a status azure-core never retries) with a message naming
the request, and lands in `unmatched`; the `replay` fixture fails the test on it.

Loaders read the three formats in tests/recordings (see its README): vcrpy cassettes of the Azure
CLI (YAML), Cloud Custodian's cassettes (JSON, bodies wrapped as {"data": ...}) and the Azure SDK
test proxy's recordings ({"Entries": [...]}).
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trustme
import yaml

RECORDINGS = Path(__file__).parent / "recordings"
ARM_HOST = "https://management.azure.com"
UNMATCHED_STATUS = 501
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})
_URL_HEADERS = frozenset({"location", "azure-asyncoperation"})
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Interaction:
    """One recorded exchange: what identifies the request, and the answer as recorded."""

    method: str
    path: str  # as recorded (still URL-encoded)
    odata_filter: str | None
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # (name, value) as recorded; a repeated header appears twice
    body: bytes
    source: str  # file and index, for messages

    @property
    def key(self) -> tuple[str, str, str | None]:
        return request_key(self.method, self.path, self.odata_filter)


def request_key(method: str, path: str, odata_filter: str | None) -> tuple[str, str, str | None]:
    """What a request is matched by: method, decoded lower-case path, decoded `$filter`."""
    normalised_filter = " ".join(odata_filter.split()) if odata_filter else None
    return method.upper(), unquote(path).rstrip("/").lower(), normalised_filter


def split_uri(uri: str) -> tuple[str, str | None]:
    """(path, decoded $filter) of a recorded or requested URI."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return parts.path, query.get("$filter")


# --- loaders ---------------------------------------------------------------------------------------


def load(*names: str) -> list[Interaction]:
    """The interactions of files under tests/recordings, e.g. `load("azure-cli/backup_now.yaml")`."""
    found: list[Interaction] = []
    for name in names:
        path = RECORDINGS / name
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            found.extend(_from_vcr(yaml.safe_load(text), name))
        elif '"Entries"' in text:
            found.extend(_from_test_proxy(json.loads(text), name))
        else:
            found.extend(_from_c7n(json.loads(text), name))
    return found


def _from_vcr(document: dict[str, Any], name: str) -> Iterable[Interaction]:
    """vcrpy cassettes (the Azure CLI's): headers map a name to a list of values; body under `string`."""
    for index, (request, response) in enumerate(_vcr_entries(document)):
        body = response["body"]["string"]
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
        yield _vcr_interaction(request, response, raw, f"{name}[{index}]")


def _from_c7n(document: dict[str, Any], name: str) -> Iterable[Interaction]:
    """Cloud Custodian's cassettes: vcrpy's shape in JSON, the body JSON wrapped as {"data": ...}."""
    for index, (request, response) in enumerate(_vcr_entries(document)):
        data = (response.get("body") or {}).get("data")
        raw = b"" if data in (None, "") else json.dumps(data).encode("utf-8")
        yield _vcr_interaction(request, response, raw, f"{name}[{index}]")


def _vcr_entries(document: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    return ((entry["request"], entry["response"]) for entry in document["interactions"])


def _vcr_interaction(
    request: dict[str, Any], response: dict[str, Any], body: bytes, source: str
) -> Interaction:
    return _interaction(
        request["method"],
        request["uri"],
        response["status"]["code"],
        response["status"].get("message", ""),
        [(header, value) for header, values in response["headers"].items() for value in values],
        body,
        source,
    )


def _from_test_proxy(document: dict[str, Any], name: str) -> Iterable[Interaction]:
    """The Azure SDK test proxy's recordings: `Entries` with one value per header, JSON bodies as JSON."""
    for index, entry in enumerate(document["Entries"]):
        raw = entry.get("ResponseBody")
        if raw is None:
            body = b""
        elif isinstance(raw, str):
            body = raw.encode("utf-8")
        else:
            body = json.dumps(raw).encode("utf-8")
        yield _interaction(
            entry["RequestMethod"],
            entry["RequestUri"],
            int(entry["StatusCode"]),
            "",
            list(entry.get("ResponseHeaders", {}).items()),
            body,
            f"{name}[{index}]",
        )


def _interaction(
    method: str, uri: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, source: str
) -> Interaction:
    path, odata_filter = split_uri(uri)
    return Interaction(method.upper(), path, odata_filter, status, reason, tuple(headers), body, source)


# --- the server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """A request the replay received and the interaction it answered with (None: unmatched)."""

    method: str
    target: str  # path and query as sent
    interaction: Interaction | None


class ReplayServer:
    """Serves loaded interactions over HTTPS on 127.0.0.1 (a free port) with a throw-away CA.

    `play(interactions)` replaces what is served and forgets what was asked before; `exchanges`
    lists every request in order, `unmatched` those no interaction answered.
    """

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="backupwarden-replay-"))
        ca = trustme.CA()
        self.ca_bundle = str(self._dir / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ReplayHandler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.replay = self  # type: ignore[attr-defined]  # how the handler finds its script
        self.endpoint = f"https://127.0.0.1:{self._server.server_port}"
        self._lock = threading.Lock()
        self._script: list[Interaction] = []
        self._used: list[bool] = []
        self.exchanges: list[Exchange] = []
        self._thread: threading.Thread | None = None

    def play(self, interactions: Sequence[Interaction]) -> None:
        with self._lock:
            self._script = list(interactions)
            self._used = [False] * len(self._script)
            self.exchanges = []

    @property
    def unmatched(self) -> list[Exchange]:
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.interaction is None]

    def unused(self) -> list[Interaction]:
        """The loaded interactions no request has been answered with yet."""
        with self._lock:
            return [entry for entry, used in zip(self._script, self._used, strict=True) if not used]

    def answer(self, method: str, target: str) -> Interaction | None:
        """The next unused interaction matching the request (and mark it used), or None."""
        path, odata_filter = split_uri(target)
        key = request_key(method, path, odata_filter)
        with self._lock:
            found = None
            for index, entry in enumerate(self._script):
                if not self._used[index] and entry.key == key:
                    self._used[index] = True
                    found = entry
                    break
            self.exchanges.append(Exchange(method, target, found))
            return found

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _ReplayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Azure's endpoints
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        pass

    def _replay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # the request body; masked in the recordings, so never matched
        replay: ReplayServer = self.server.replay  # type: ignore[attr-defined]
        found = replay.answer(self.command, self.path)
        if found is None:
            self._send(
                UNMATCHED_STATUS,
                "Not Recorded",
                [("Content-Type", "application/json")],
                json.dumps(
                    {
                        "error": {
                            "code": "ReplayUnmatched",
                            "message": f"no unused recorded interaction for {self.command} {self.path}",
                        }
                    }
                ).encode("utf-8"),
            )
            return
        headers = [
            (name, _local(value, replay.endpoint) if name.lower() in _URL_HEADERS else value)
            for name, value in found.headers
            if name.lower() not in _FRAMING_HEADERS
        ]
        self._send(found.status, found.reason, headers, found.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _replay

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        # send_response_only: no Server/Date of this server beside the recorded ones
        self.send_response_only(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        if status not in _NO_BODY_STATUSES:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status not in _NO_BODY_STATUSES and self.command != "HEAD":
            self.wfile.write(body)


def _local(url: str, endpoint: str) -> str:
    return re.sub(re.escape(ARM_HOST), endpoint, url, count=1, flags=re.IGNORECASE)
