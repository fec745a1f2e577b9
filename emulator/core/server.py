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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


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
