"""Azurite, the Azure Storage emulator (npm package, installed by `make` into node_modules/), on free ports.

Started with port 0 for blob, queue and table; Azurite prints the ports it bound, which are
read back from its output, so two runs never race for a port. With `persistent=True` the data
lives on disk in the work directory, so `restart()` (stop, then start on the same ports and
data) shows a client what a storage outage and recovery look like, with nothing lost.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")
# Azurite's well-known development account (public, in Microsoft's Azurite documentation; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """Blob + queue + table emulation on loopback; `connection_string` reaches all three.

    In memory unless `persistent`; only a persistent Azurite can `restart()` (an in-memory one would
    come back empty, which real storage never does).
    """

    def __init__(
        self, executable: Path = AZURITE_BIN, startup_timeout_s: float = 30.0, *, persistent: bool = False
    ) -> None:
        self.executable = executable
        self.startup_timeout_s = startup_timeout_s
        self.persistent = persistent
        self.ports: dict[str, int] = {}
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def connection_string(self) -> str:
        if set(self.ports) != {"blob", "queue", "table"}:
            raise AzuriteError("Azurite is not running")
        return connection_string(self.ports["blob"], self.ports["queue"], self.ports["table"])

    def start(self) -> Azurite:
        if not self.executable.exists():
            raise AzuriteError(
                f"Azurite is not installed ({self.executable} is missing): run `make test` or `make demo`, "
                "which install it with npm from package.json (or run `npm ci` in the repository root)."
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="backupwarden-azurite-"))
        self._launch({"blob": 0, "queue": 0, "table": 0})
        return self

    def restart(self) -> Azurite:
        """Stop Azurite and start it again on the same ports with the same data (persistent only)."""
        if not self.persistent:
            raise AzuriteError("only a persistent Azurite (persistent=True) keeps its data over a restart")
        if self._process is None or self._workdir is None:
            raise AzuriteError("Azurite is not running")
        ports = dict(self.ports)
        self._terminate()
        self.restarts += 1
        self._launch(ports)
        return self

    def stop(self) -> None:
        self._terminate()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.ports = {}

    def _launch(self, ports: dict[str, int]) -> None:
        assert self._workdir is not None
        log_path = self._workdir / f"azurite-{self.restarts}.log"
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self.executable), *self._arguments(ports)],
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.ports = self._wait_for_ports(log_path)
            _wait_until_answering(self.ports["table"], self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _arguments(self, ports: dict[str, int]) -> list[str]:
        assert self._workdir is not None
        storage = (
            ["--location", str(self._workdir / "data")]
            if self.persistent
            else ["--inMemoryPersistence", "--extentMemoryLimit", "256"]
        )
        return [
            "--silent",
            "--loose",
            "--skipApiVersionCheck",  # the Python SDKs may send a newer x-ms-version than Azurite knows
            *storage,
            "--disableTelemetry",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(ports["blob"]),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(ports["queue"]),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(ports["table"]),
        ]

    def _wait_for_ports(self, log_path: Path) -> dict[str, int]:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            output = log_path.read_text(errors="replace")
            ports = {service.lower(): int(port) for service, port in _LISTENING.findall(output)}
            if len(ports) == 3:
                return ports
            if self._process.poll() is not None:
                raise AzuriteError(f"Azurite exited with {self._process.returncode}:\n{output}")
            time.sleep(0.05)
        raise AzuriteError(
            f"Azurite did not report its ports within {self.startup_timeout_s:.0f} s:\n"
            f"{log_path.read_text(errors='replace')}"
        )


def connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    """The connection string of an Azurite on loopback with the well-known account."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{ACCOUNT_NAME};"
    )


def _wait_until_answering(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite does not answer on port {port}") from None
            time.sleep(0.05)
