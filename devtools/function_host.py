"""A stand-in for the Functions host's HTTP front door, for the demo: POST → `func.HttpRequest` → handler.

The Functions host cannot be installed here; this serves one HTTP function on loopback so the
emulator's alert evaluator can POST its notifications to `alert_webhook` as an action group would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import azure.functions as func

HttpHandler = Callable[[func.HttpRequest], func.HttpResponse]


class FunctionHttpHost:
    def __init__(self, handler: HttpHandler, route: str) -> None:
        host = self

        class _Request(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = func.HttpRequest(
                    method="POST",
                    url=f"{host.url}{self.path}",
                    headers=dict(self.headers.items()),
                    params={},
                    body=self.rfile.read(length),
                )
                response = handler(request)
                body = response.get_body()
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.mimetype or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Request)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self.url = f"{self.base}/api/{route}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FunctionHttpHost:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
