"""A TCP proxy in front of a server that can lose the answer to a request.

The request goes through and the server acts on it; then the connection drops before the client
reads a byte of the answer, as when a server closes an idle keep-alive connection just as the
client reuses it. The client sees "connection aborted" and cannot know whether the write is stored.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class LossyProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._lose: list[tuple[bytes, int]] = []  # (request line prefix, answers still to lose)
        self.lost = 0
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_answer(self, request_prefix: bytes, times: int = 1) -> None:
        """Lose the answers to the next `times` requests whose first line starts with `request_prefix`."""
        with self._lock:
            self._lose.append((request_prefix, times))

    def _should_lose(self, chunk: bytes) -> bool:
        with self._lock:
            for index, (prefix, times) in enumerate(self._lose):
                if chunk.startswith(prefix) and times > 0:
                    self._lose[index] = (prefix, times - 1)
                    return True
        return False

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            doomed = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        try:
            while chunk := client.recv(65536):
                if self._should_lose(chunk):
                    doomed.set()
                upstream.sendall(chunk)
        except OSError:
            pass
        _close(upstream)

    def _answers(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        try:
            while chunk := upstream.recv(65536):
                if doomed.is_set():  # the server answered: it acted on the request
                    with self._lock:
                        self.lost += 1
                    break
                client.sendall(chunk)
        except OSError:
            pass
        _close(client)
        _close(upstream)

    def close(self) -> None:
        self._stopping = True
        self._listener.close()

    def __enter__(self) -> LossyProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
