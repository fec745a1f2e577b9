"""What bench/new_vm.py drives: the emulator in its own process, the Event Grid webhook, the queue and
its workers (each doing what the queue trigger does), and a recorder of what their SDK clients sent."""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.app import build_action_recorder, build_protect_vm, process_pacer
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.vm_events import InvalidEvent, VmWritten, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import TransientFailure
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MAX_DELIVERIES = 5  # host.json maxDequeueCount


# --- the emulator in its own process ------------------------------------------------------------
class EmulatorProcess:
    """`python -m emulator serve` on a free port, driven through its admin API."""

    def __init__(self, scenario: dict[str, Any], time_scale: float) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bench-new-vm-"))
        self._scenario = self._dir / "scenario.json"
        self._scenario.write_text(json.dumps(scenario), encoding="utf-8")
        self._time_scale = time_scale
        self._process: subprocess.Popen[str] | None = None
        self._session = requests.Session()
        self.endpoint = ""
        self.ca_bundle = ""

    def __enter__(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "emulator", "serve", "--scenario", str(self._scenario)]
        command += ["--time-scale", repr(self._time_scale)]
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        first_line = self._process.stdout.readline()
        if not first_line:
            self.__exit__()
            raise RuntimeError(f"the emulator exited with {self._process.wait()} before serving")
        served = json.loads(first_line)
        self.endpoint, self.ca_bundle = served["endpoint"], served["ca_bundle"]
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._session.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = self._session.request(
            method, f"{self.endpoint}{path}", json=body, verify=self.ca_bundle, timeout=30
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None


@dataclass(frozen=True)
class ClockMap:
    """The emulated clock against time.monotonic() (one clock for every process on Linux)."""

    real0: float
    emulated0: datetime
    scale: float

    @classmethod
    def of(cls, emulator: EmulatorProcess, samples: int = 7) -> ClockMap:
        """Read the emulator's clock a few times; the quickest answer brackets it closest."""
        readings = []
        for _ in range(samples):
            before = time.monotonic()
            answer = emulator.admin("GET", "/_emulator/clock")
            readings.append((time.monotonic() - before, before, answer))
        spread, before, answer = min(readings, key=lambda reading: reading[0])
        return cls(before + spread / 2, datetime.fromisoformat(answer["now"]), float(answer["scale"]))

    def real(self, moment: datetime) -> float:
        return self.real0 + (moment - self.emulated0).total_seconds() / self.scale

    def emulated_now(self) -> datetime:
        return self.emulated0 + timedelta(seconds=(time.monotonic() - self.real0) * self.scale)


# --- what the clients sent ----------------------------------------------------------------------
@dataclass(frozen=True)
class SentRequest:
    method: str
    path: str  # percent-decoded, as the emulator routes it
    status: int
    answered: float  # time.monotonic() when the answer came


class RequestRecorder(SansIOHTTPPolicy[Any, Any]):
    """Every try a thread's SDK clients send, while that thread records (one work item at a time)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def recording(self) -> Iterator[list[SentRequest]]:
        sent: list[SentRequest] = []
        self._local.sent = sent
        try:
            yield sent
        finally:
            self._local.sent = None

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        sent: list[SentRequest] | None = getattr(self._local, "sent", None)
        if sent is not None:
            http = request.http_request
            path = unquote(urlsplit(http.url).path)
            sent.append(SentRequest(http.method, path, response.http_response.status_code, time.monotonic()))


class RecordedClients(AzureClients):
    """The production client factory with the recorder added to every ARM client's pipeline."""

    def __init__(self, settings: Settings, recorder: RequestRecorder) -> None:
        super().__init__(settings, pacer=process_pacer(settings))  # one pacer per process, as in Azure
        self._recorder = recorder

    def _common_kwargs(self) -> dict[str, Any]:
        kwargs = super()._common_kwargs()
        kwargs["per_retry_policies"] = [*kwargs["per_retry_policies"], self._recorder]
        return kwargs


# --- Event Grid webhook -> queue -> workers -----------------------------------------------------
@dataclass(frozen=True)
class Received:
    event_id: str
    vm_id: str
    event_time: datetime  # emulated
    at: float  # time.monotonic() when the webhook got it


class EventInbox:
    """The Event Grid trigger's part, on a local webhook: parse each event, pass VM writes on."""

    def __init__(self, on_vm_write: Callable[[VmWritten], None]) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._on_vm_write = on_vm_write
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="inbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/api/events"

    def __enter__(self) -> EventInbox:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def accept(self, events: list[Any]) -> None:
        for event in events:
            try:
                parsed = read_vm_write(event)
            except InvalidEvent as exc:
                logger.warning("rejected event: %s", exc)
                continue
            if not isinstance(parsed, VmWritten):
                continue
            received = Received(parsed.event_id, parsed.vm_id, parse_event_time(event), time.monotonic())
            with self._lock:
                self.received.append(received)
            self._on_vm_write(parsed)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                inbox.accept(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def parse_event_time(event: dict[str, Any]) -> datetime:
    """`eventTime` (Event Grid, seven fractional digits) or `time` (CloudEvents), to the microsecond."""
    text = str(event.get("eventTime") or event.get("time"))
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00")


@dataclass(frozen=True)
class Handled:
    """One `handle` of one work item by one worker."""

    item: NewVmWorkItem
    outcome: Outcome
    transient: bool  # the worker raised TransientFailure: the queue redelivers the message
    started: float
    finished: float
    sent: tuple[SentRequest, ...]
    visible: float = math.nan  # when its message became visible on the queue (the queue sets it)

    @property
    def waited_s(self) -> float:
        """In the queue: from the message becoming visible to a worker starting it."""
        return self.started - self.visible


class WorkQueue:
    """The Storage queue and its trigger: worker threads; failed messages come back after a delay."""

    def __init__(self, workers: int, requeue_delay_s: float, redelivery_delay_s: float) -> None:
        self.handled: list[Handled] = []
        self.poisoned: list[NewVmWorkItem] = []
        self._workers = workers
        self._requeue_delay_s = requeue_delay_s  # a REQUEUED item's new message is invisible this long
        self._redelivery_delay_s = redelivery_delay_s  # a failed delivery's visibility timeout
        self._messages: queue.Queue[tuple[str, int, float] | None] = queue.Queue()
        self._outstanding = 0
        self._cond = threading.Condition()

    @contextmanager
    def running(self, handle: Callable[[NewVmWorkItem], Handled]) -> Iterator[WorkQueue]:
        threads = [
            threading.Thread(target=self._work, args=(handle,), name=f"worker-{n}", daemon=True)
            for n in range(self._workers)
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            for _thread in threads:
                self._messages.put(None)
            for thread in threads:
                thread.join(timeout=30)

    def put(self, message: str, deliveries: int = 0, delay_s: float = 0.0) -> None:
        with self._cond:
            self._outstanding += 1
        if delay_s > 0:
            threading.Timer(delay_s, self._make_visible, [message, deliveries]).start()
        else:
            self._make_visible(message, deliveries)

    def _make_visible(self, message: str, deliveries: int) -> None:
        self._messages.put((message, deliveries, time.monotonic()))

    def wait_until_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _work(self, handle: Callable[[NewVmWorkItem], Handled]) -> None:
        while (message := self._messages.get()) is not None:
            text, deliveries, visible = message
            try:
                self._deliver(handle, NewVmWorkItem.from_json(text), deliveries + 1, visible)
            finally:
                with self._cond:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def _deliver(
        self, handle: Callable[[NewVmWorkItem], Handled], item: NewVmWorkItem, deliveries: int, visible: float
    ) -> None:
        handled = replace(handle(item), visible=visible)
        with self._cond:
            self.handled.append(handled)
        if handled.outcome.result is Result.REQUEUED:
            self.put(item.waited_once_more().to_json(), 0, self._requeue_delay_s)
        elif handled.transient and deliveries < MAX_DELIVERIES:
            self.put(item.to_json(), deliveries, self._redelivery_delay_s)
        elif handled.transient:
            with self._cond:
                self.poisoned.append(item)


def protect_worker(
    settings: Settings, recorder: RequestRecorder, now: Callable[[], datetime]
) -> Callable[[NewVmWorkItem], Handled]:
    """What the queue trigger runs for one message (functions.new_vms.protect_vm), recorded."""

    def handle(item: NewVmWorkItem) -> Handled:
        started = time.monotonic()
        transient = False
        with recorder.recording() as sent, RecordedClients(settings, recorder) as clients:
            try:
                outcome = build_protect_vm(settings, clients, now=now).handle(item)
            except TransientFailure as exc:
                outcome, transient = exc.outcome, True
            finished = time.monotonic()
            if not transient:
                actions = build_action_recorder(settings, clients, now=now)
                actions.record([outcome], source="Queue", dry_run=False)
        return Handled(item, outcome, transient, started, finished, tuple(sent))

    return handle
