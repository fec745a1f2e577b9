"""HTTPS on loopback with a throw-away CA, in a background thread."""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from emulator.core.app import Emulator

logging.getLogger("werkzeug").setLevel(logging.ERROR)


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    # The status line and headers go out apart from the body: with Nagle's algorithm on, every
    # answer waits for the client's delayed ACK (about 15 ms a request on loopback).
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def run_wsgi(self) -> None:
        # After each answer werkzeug reads and throws away whatever the client sent next (it expects
        # to close): on a kept-alive connection that is the next request, and the client then waits
        # for an answer that never comes. Reads after the answer's headers see end-of-stream instead.
        self._answered = False
        stream = self.rfile
        self.rfile = _ReadsUntilAnswered(stream, self)  # type: ignore[assignment]
        try:
            super().run_wsgi()
        finally:
            self.rfile = stream

    def end_headers(self) -> None:
        super().end_headers()
        self._answered = True

    def send_header(self, keyword: str, value: str) -> None:
        """Keep connections alive, as Azure's endpoints do.

        Werkzeug closes every connection after one answer, since http.server cannot skip an unread
        request body; the emulator reads every body whole (Content-Length) before answering, so the
        next request starts where it should. Without keep-alive every request pays a TLS handshake
        on both sides, and a benchmark measures handshakes instead of the client.
        """
        if keyword.lower() == "connection" and value.lower() == "close" and self._keep_alive_possible():
            return
        if getattr(self.server.app, "lowercase_headers", False):
            keyword = keyword.lower()  # as every HTTP/2 answer and the azure-cli recordings name them
        super().send_header(keyword, value)

    def _keep_alive_possible(self) -> bool:
        headers = self.headers
        return (
            self.request_version == "HTTP/1.1"
            and self.connection.fileno() != -1  # not a connection the emulator reset on purpose
            and headers is not None
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
            and headers.get("Connection", "").lower() != "close"
        )


class _ReadsUntilAnswered:
    """The request stream of one exchange: empty once the handler has sent the answer's headers."""

    def __init__(self, stream: Any, handler: _QuietHandler) -> None:
        self._stream = stream
        self._handler = handler

    def read(self, size: int = -1) -> bytes:
        return b"" if self._handler._answered else bytes(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return b"" if self._handler._answered else bytes(self._stream.readline(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class EmulatorServer:
    """Serves an `Emulator` over HTTPS on 127.0.0.1.

    `port=0` picks a free port. `ca_bundle` is the PEM file of the throw-away CA that
    clients pass as `connection_verify`.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        port: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.emulator = emulator or Emulator()
        self._dir = state_dir or Path(tempfile.mkdtemp(prefix="backupwarden-emulator-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_bundle = str((self._dir / "ca.pem").resolve())
        ca.cert_pem.write_to_path(self.ca_bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1",
            port,
            self.emulator,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=context,
        )
        self.port = self._server.server_port
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "ca_bundle": self.ca_bundle}
