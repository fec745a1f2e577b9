"""The Storage queues: the sweep queue (BACKUPWARDEN_SWEEP_QUEUE) and its poison queue, and the work
queues the new-VM trigger and the alert webhook send to (BACKUPWARDEN_PROTECT_QUEUE,
BACKUPWARDEN_REMEDIATION_QUEUE). The only Storage Queue calls of the app.

Messages are base64 text, as the Functions queue trigger reads them (`host.json` messageEncoding).
A queue is created when missing: by `ensure` (the composition root runs it once per process),
and by a send that finds the queue gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from backupwarden.adapters.azure.errors import AzureCallError

POISON_SUFFIX = "-poison"  # what the Functions host appends to a queue's name
SEND_THREADS = 8  # enqueueing is a round trip per message; a plan of thousands sends them in parallel


class QueueError(AzureCallError):
    """A Storage queue call failed (the cause is chained): Storage, not an Azure API, is at fault."""


def create_queue(queue: QueueClient) -> None:
    """Create the queue if it is missing; QueueError when Storage fails."""
    try:
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
    except AzureError as exc:
        raise QueueError.from_sdk(f"create queue {queue.queue_name}", exc) from exc


class WorkQueue:
    """A queue of work items, each sent on its own (the new-VM and the remediation queue)."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    @property
    def name(self) -> str:
        return str(self._queue.queue_name)

    def ensure(self) -> None:
        create_queue(self._queue)

    def send(self, body: str, delay_s: int = 0) -> None:
        """Enqueue `body`, invisible for `delay_s` seconds; AzureCallError when it was not sent."""
        try:
            try:
                self._queue.send_message(body, visibility_timeout=delay_s or None)
            except ResourceNotFoundError:  # the queue itself: deleted, or never ensured
                self.ensure()
                self._queue.send_message(body, visibility_timeout=delay_s or None)
        except AzureError as exc:
            raise QueueError.from_sdk(f"enqueue work item on {self.name}", exc) from exc


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    pop_receipt: str
    body: str
    dequeue_count: int


class SweepQueue(WorkQueue):
    """The sweep queue: work items sent many at once, and drained here too (the CLI's local drain)."""

    def __init__(self, queue: QueueClient, poison: QueueClient) -> None:
        super().__init__(queue)
        self._poison = poison

    def ensure(self) -> None:
        super().ensure()
        create_queue(self._poison)

    def send_each(self, bodies: Iterable[str]) -> list[AzureCallError | None]:
        """Send every body; per body None (sent) or why it was not."""
        with ThreadPoolExecutor(max_workers=SEND_THREADS) as pool:
            return list(pool.map(self._send, bodies))

    def _send(self, body: str) -> AzureCallError | None:
        try:
            self._queue.send_message(body)
        except AzureError as exc:
            return QueueError.from_sdk("enqueue sweep work item", exc)
        return None

    def receive(self, count: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
        try:
            return [
                ReceivedMessage(str(m.id), str(m.pop_receipt), str(m.content), int(m.dequeue_count or 1))
                for m in self._queue.receive_messages(
                    messages_per_page=count, max_messages=count, visibility_timeout=visibility_timeout_s
                )
            ]
        except AzureError as exc:
            raise QueueError.from_sdk("receive sweep work items", exc) from exc

    def delete(self, message: ReceivedMessage) -> None:
        try:
            self._queue.delete_message(message.id, message.pop_receipt)
        except AzureError as exc:
            raise QueueError.from_sdk("delete sweep work item", exc) from exc

    def retry_later(self, message: ReceivedMessage, delay_s: int) -> None:
        """Give the message back, visible again after `delay_s` (the host's visibilityTimeout on failure)."""
        try:
            self._queue.update_message(message.id, message.pop_receipt, visibility_timeout=delay_s)
        except AzureError as exc:
            raise QueueError.from_sdk("release sweep work item", exc) from exc

    def move_to_poison(self, message: ReceivedMessage) -> None:
        try:
            self._poison.send_message(message.body)
            self._queue.delete_message(message.id, message.pop_receipt)
        except AzureError as exc:
            raise QueueError.from_sdk("move sweep work item to the poison queue", exc) from exc

    def approximate_count(self) -> int:
        try:
            return int(self._queue.get_queue_properties().approximate_message_count or 0)
        except AzureError as exc:
            raise QueueError.from_sdk("read sweep queue", exc) from exc
