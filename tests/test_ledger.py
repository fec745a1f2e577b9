"""The idempotency ledger on real Azurite: claims, settlement, budget, staleness and races."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient

from backupwarden.adapters.storage.ledger import (
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    ClaimLost,
    Ledger,
    LedgerError,
    LedgerStatus,
    LedgerUnavailable,
    partition_key_for,
)
from backupwarden.settings import azurite_connection_string
from tests.lossy_proxy import LossyProxy

VM = (
    "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/RG-App"
    "/providers/Microsoft.Compute/virtualMachines/VM-01"
)
DAY = date(2026, 3, 14)
TTL = timedelta(minutes=30)


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def table_name() -> str:
    return f"ledger{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_ledger(azurite: str, table_name: str, clock: ManualClock) -> Iterator[Callable[[], Ledger]]:
    """Each call is a separate ledger client on the same table, like separate function instances."""
    tables: list[TableClient] = []

    def make() -> Ledger:
        table = TableClient.from_connection_string(azurite, table_name=table_name)
        tables.append(table)
        return Ledger(table, in_progress_ttl=TTL, clock=clock)

    make().ensure_table()
    yield make
    tables[0].delete_table()
    for table in tables:
        table.close()


@pytest.fixture
def ledger(make_ledger: Callable[[], Ledger]) -> Ledger:
    return make_ledger()


def test_claim_then_complete_records_the_job(ledger: Ledger, clock: ManualClock) -> None:
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    assert (claim.attempts, claim.run_id, claim.vm_id) == (1, "run-1", VM.lower())
    in_progress = ledger.record(VM, "backup", DAY)
    assert in_progress is not None
    assert in_progress.status is LedgerStatus.IN_PROGRESS
    assert in_progress.expires == clock.now + TTL

    ledger.complete(claim, job_id="job-1", op_id="op-1")

    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    assert (record.status, record.job_id, record.op_id) == (LedgerStatus.COMPLETED, "job-1", "op-1")
    assert record.attempts == 1
    assert record.vm_id == VM.lower()
    assert record.first_seen == clock.now
    assert record.expires == datetime(2026, 3, 15, tzinfo=UTC)


JOB_START = datetime(2026, 3, 14, 9, 1, tzinfo=UTC)


def test_completion_records_its_job_for_attribution(ledger: Ledger) -> None:
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    assert ledger.job_attribution("JOB-1", VM, JOB_START) is None

    ledger.complete(claim, job_id="Job-1", triggered_by="Sweep")

    # job ids and VM ids differ in case between services
    found = ledger.job_attribution("JOB-1", VM.upper(), JOB_START)
    assert found is not None
    assert (found.vm_id, found.action, found.run_id, found.attempt, found.triggered_by) == (
        VM.lower(),
        "backup",
        "run-1",
        1,
        "Sweep",
    )
    assert ledger.job_attribution("job-1", VM.replace("VM-01", "VM-02"), JOB_START) is None
    next_day = JOB_START + timedelta(days=1)  # a job that started after midnight, claimed before
    assert ledger.job_attribution("job-1", VM, next_day) is not None
    assert ledger.job_attribution("job-1", VM, JOB_START + timedelta(days=3)) is None


def test_every_attempt_of_the_day_keeps_its_job(ledger: Ledger) -> None:
    first = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    ledger.complete(first, job_id="job-1", triggered_by="Sweep")
    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    ledger.fail(record.as_claim(), "UserErrorGuestAgentStatusUnavailable", job_id="job-1")  # its job failed
    second = ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)
    ledger.complete(second, job_id="job-2", triggered_by="Remediation")

    attributed = {job: ledger.job_attribution(job, VM, JOB_START) for job in ("job-1", "job-2")}

    assert {job: (a.run_id, a.attempt, a.triggered_by) for job, a in attributed.items() if a} == {
        "job-1": ("run-1", 1, "Sweep"),
        "job-2": ("run-2", 2, "Remediation"),
    }


def test_a_lost_claim_records_no_job(ledger: Ledger, clock: ManualClock) -> None:
    abandoned = ledger.claim(VM, "backup", DAY, "run-crashed", max_attempts=3)
    clock.advance(TTL + timedelta(seconds=1))
    ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)

    with pytest.raises(ClaimLost):
        ledger.complete(abandoned, job_id="late-job", triggered_by="Sweep")

    assert ledger.job_attribution("late-job", VM, JOB_START) is None
    record = ledger.record(VM, "backup", DAY)
    assert record is not None and (record.status, record.run_id) == (LedgerStatus.IN_PROGRESS, "run-2")


def test_same_day_duplicate_while_in_progress_is_already_claimed(ledger: Ledger) -> None:
    ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    with pytest.raises(AlreadyClaimed) as raised:
        ledger.claim(VM.upper(), "backup", DAY, "run-2", max_attempts=3)
    assert raised.value.reason == "in_progress"
    assert raised.value.record is not None and raised.value.record.run_id == "run-1"


def test_same_day_after_completion_is_already_claimed(ledger: Ledger) -> None:
    ledger.complete(ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3), job_id="job-1")
    with pytest.raises(AlreadyClaimed) as raised:
        ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)
    assert raised.value.reason == "completed"
    assert raised.value.record is not None and raised.value.record.job_id == "job-1"


def test_next_day_and_other_action_are_fresh_claims(ledger: Ledger) -> None:
    ledger.complete(ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3), job_id="job-1")
    next_day = ledger.claim(VM, "backup", DAY + timedelta(days=1), "run-2", max_attempts=3)
    other_action = ledger.claim(VM, "enable-protection", DAY, "run-2", max_attempts=3)
    assert next_day.attempts == other_action.attempts == 1
    assert ledger.attempts_today(VM, "backup", DAY + timedelta(days=2)) == 0


def test_failed_attempts_are_retried_until_the_budget_is_spent(ledger: Ledger) -> None:
    for attempt in (1, 2, 3):
        claim = ledger.claim(VM, "backup", DAY, f"run-{attempt}", max_attempts=3)
        assert claim.attempts == attempt
        ledger.fail(claim, "BackUpOperationFailed", job_id=f"job-{attempt}")
    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    assert (record.status, record.reason) == (LedgerStatus.FAILED, "BackUpOperationFailed")
    assert record.job_id == "job-3"
    with pytest.raises(BudgetExhausted) as raised:
        ledger.claim(VM, "backup", DAY, "run-4", max_attempts=3)
    assert (raised.value.attempts, raised.value.max_attempts) == (3, 3)
    assert ledger.attempts_today(VM, "backup", DAY) == 3
    assert ledger.claim(VM, "backup", DAY, "run-5", max_attempts=4).attempts == 4


def test_retry_after_failure_records_why(ledger: Ledger) -> None:
    first = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    ledger.fail(first, "UserErrorGuestAgentStatusUnavailable")
    ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)
    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    assert (record.status, record.run_id, record.job_id) == (LedgerStatus.IN_PROGRESS, "run-2", "")
    assert record.reason == "retry after UserErrorGuestAgentStatusUnavailable"


def test_release_of_a_first_attempt_leaves_no_trace(ledger: Ledger) -> None:
    ledger.release(ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3))
    assert ledger.record(VM, "backup", DAY) is None
    assert ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3).attempts == 1


def test_release_of_a_retry_gives_the_attempt_back(ledger: Ledger) -> None:
    ledger.fail(ledger.claim(VM, "backup", DAY, "run-1", max_attempts=2), "BackUpOperationFailed")
    ledger.release(ledger.claim(VM, "backup", DAY, "run-2", max_attempts=2))
    assert ledger.attempts_today(VM, "backup", DAY) == 1
    assert ledger.claim(VM, "backup", DAY, "run-3", max_attempts=2).attempts == 2


def test_stale_in_progress_claim_is_taken_over_and_its_holder_loses_it(
    ledger: Ledger, clock: ManualClock
) -> None:
    abandoned = ledger.claim(VM, "backup", DAY, "run-crashed", max_attempts=3)
    clock.advance(TTL - timedelta(seconds=1))
    with pytest.raises(AlreadyClaimed):
        ledger.claim(VM, "backup", DAY, "run-early", max_attempts=3)
    clock.advance(timedelta(seconds=2))

    takeover = ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)

    assert takeover.attempts == 2  # the abandoned claim may have reached Azure: it counts
    record = ledger.record(VM, "backup", DAY)
    assert record is not None and record.reason == "took over a stale claim of run run-crashed"
    with pytest.raises(ClaimLost):
        ledger.complete(abandoned, job_id="late-job")
    with pytest.raises(ClaimLost):
        ledger.release(abandoned)
    ledger.complete(takeover, job_id="job-2")


def test_stale_claim_at_budget_is_budget_exhausted(ledger: Ledger, clock: ManualClock) -> None:
    ledger.claim(VM, "backup", DAY, "run-crashed", max_attempts=1)
    clock.advance(TTL + timedelta(seconds=1))
    with pytest.raises(BudgetExhausted):
        ledger.claim(VM, "backup", DAY, "run-2", max_attempts=1)


def _race(make_ledger: Callable[[], Ledger], contenders: int) -> tuple[list[Claim], list[LedgerError]]:
    ledgers = [make_ledger() for _ in range(contenders)]
    start = threading.Barrier(contenders)
    claims: list[Claim] = []
    refusals: list[LedgerError] = []
    lock = threading.Lock()

    def contend(index: int) -> None:
        start.wait()
        try:
            claim = ledgers[index].claim(VM, "backup", DAY, f"run-{index}", max_attempts=3)
        except LedgerError as exc:
            with lock:
                refusals.append(exc)
        else:
            with lock:
                claims.append(claim)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return claims, refusals


def test_concurrent_first_claims_have_exactly_one_winner(make_ledger: Callable[[], Ledger]) -> None:
    claims, refusals = _race(make_ledger, 8)
    assert len(claims) == 1
    assert len(refusals) == 7
    assert all(isinstance(refusal, AlreadyClaimed) for refusal in refusals)
    record = make_ledger().record(VM, "backup", DAY)
    assert record is not None and record.run_id == claims[0].run_id and record.attempts == 1


def test_concurrent_retries_after_failure_have_exactly_one_winner(make_ledger: Callable[[], Ledger]) -> None:
    ledger = make_ledger()
    ledger.fail(ledger.claim(VM, "backup", DAY, "run-first", max_attempts=3), "BackUpOperationFailed")
    claims, refusals = _race(make_ledger, 8)
    assert len(claims) == 1
    assert claims[0].attempts == 2
    assert {type(refusal) for refusal in refusals} == {AlreadyClaimed}
    assert ledger.attempts_today(VM, "backup", DAY) == 2


def test_first_seen_is_set_once(ledger: Ledger, clock: ManualClock) -> None:
    first = ledger.note_first_seen(VM)
    clock.advance(timedelta(hours=5))
    assert ledger.note_first_seen(VM.lower()) == first == datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    assert ledger.record(VM, "backup", DAY) is None  # the seen entity is no claim


def test_keys_are_safe_for_table_storage() -> None:
    key = partition_key_for(VM)
    assert len(key) == 64 and all(ch in "0123456789abcdef" for ch in key)
    assert partition_key_for(VM.upper()) == key


@pytest.mark.parametrize("action", ["", "back/up", "backup|x", "a#b", "why?", "seen", "tab\there"])
def test_actions_that_cannot_be_keys_are_refused(ledger: Ledger, action: str) -> None:
    with pytest.raises(ValueError, match="cannot be part of a table key"):
        ledger.claim(VM, action, DAY, "run-1", max_attempts=3)


def test_max_attempts_below_one_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ledger.claim(VM, "backup", DAY, "run-1", max_attempts=0)


def test_storage_failure_is_wrapped_with_its_cause() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    table = TableClient.from_connection_string(
        azurite_connection_string(closed_port, closed_port, closed_port), table_name="ledger", retry_total=0
    )
    with table, pytest.raises(LedgerUnavailable) as raised:
        Ledger(table).claim(VM, "backup", DAY, "run-1", max_attempts=3)
    assert isinstance(raised.value.__cause__, AzureError)


# --- lost answers: the write is stored, the caller never hears so ---------------------------------
@pytest.fixture
def lossy(azurite: str, table_name: str, clock: ManualClock) -> Iterator[tuple[Ledger, LossyProxy]]:
    """A ledger whose Table Storage traffic goes through a proxy that can lose answers."""
    table_port = int(re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)/", azurite).group(1))  # type: ignore[union-attr]
    with LossyProxy(table_port) as proxy:
        connection = azurite_connection_string(table_port, table_port, proxy.port)
        with TableClient.from_connection_string(connection, table_name=table_name) as table:
            ledger = Ledger(table, in_progress_ttl=TTL, clock=clock)
            ledger.ensure_table()
            yield ledger, proxy
            table.delete_table()


def test_a_claim_whose_answer_was_lost_is_still_ours(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    proxy.lose_answer(b"POST /devstoreaccount1/ledger")

    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)

    assert proxy.lost == 1, "the insert reached Azurite and its answer was dropped"
    record = ledger.record(VM, "backup", DAY)
    assert record is not None and (record.status, record.run_id, record.attempts) == (
        LedgerStatus.IN_PROGRESS,
        "run-1",
        1,
    )
    ledger.complete(claim, job_id="job-1", triggered_by="Sweep")  # the claim's ETag is the stored one
    with pytest.raises(AlreadyClaimed):
        ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)


def test_a_first_claim_whose_answer_was_lost_is_still_ours(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    proxy.lose_answer(b"POST /devstoreaccount1/ledger")

    claim = ledger.claim_if_new(VM, "backup", DAY, "run-1")

    assert proxy.lost == 1
    assert claim is not None and claim.attempts == 1
    assert ledger.claim_if_new(VM, "backup", DAY, "run-2") is None, "someone else's claim is not ours"


def test_a_takeover_whose_answer_was_lost_is_still_ours(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    ledger.fail(ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3), "UserErrorSomething")
    proxy.lose_answer(b"PUT /devstoreaccount1/ledger")  # azure-core retries the PUT: 412 on its own write

    claim = ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)

    assert proxy.lost == 1
    assert (claim.run_id, claim.attempts) == ("run-2", 2)
    ledger.complete(claim, job_id="job-2", triggered_by="Sweep")


def test_a_completion_whose_answer_was_lost_is_settled(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    proxy.lose_answer(b"PATCH /devstoreaccount1/ledger")

    ledger.complete(claim, job_id="job-1", triggered_by="Sweep")

    assert proxy.lost == 1
    record = ledger.record(VM, "backup", DAY)
    assert record is not None and (record.status, record.job_id) == (LedgerStatus.COMPLETED, "job-1")
    assert ledger.job_attribution("job-1", VM, JOB_START) is not None


def test_a_failure_whose_answer_was_lost_is_recorded(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    proxy.lose_answer(b"PATCH /devstoreaccount1/ledger")

    ledger.fail(claim, "UserErrorSomething")

    assert proxy.lost == 1
    record = ledger.record(VM, "backup", DAY)
    assert record is not None and (record.status, record.reason) == (
        LedgerStatus.FAILED,
        "UserErrorSomething",
    )


def test_a_release_whose_answer_was_lost_is_done(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    proxy.lose_answer(b"DELETE /devstoreaccount1/ledger")  # azure-core retries the DELETE: 404

    ledger.release(claim)

    assert proxy.lost == 1
    assert ledger.record(VM, "backup", DAY) is None


def test_a_lost_answer_does_not_make_another_claim_ours(lossy: tuple[Ledger, LossyProxy]) -> None:
    ledger, proxy = lossy
    first = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=3)
    proxy.lose_answer(b"PATCH /devstoreaccount1/ledger")
    ledger.fail(first, "UserErrorSomething")
    taken = ledger.claim(VM, "backup", DAY, "run-2", max_attempts=3)

    with pytest.raises(ClaimLost):
        ledger.complete(first, job_id="late-job")  # its token matches, but the entity is run-2's now

    assert taken.attempts == 2
