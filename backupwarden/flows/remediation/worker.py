"""Alert-driven remediation: re-query an alert's failures, retry what a retry fixes, escalate the rest.

The alert's payload only names the rule and, for log alerts, its dimensions; the rows come from
running the rule's own KQL (kql/) over the alert's window, so no value from the payload ever
becomes KQL. The live protected item (Recovery Services) decides whether the failure still
matters; the ledger makes repeated alerts for one failure count once.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.logs_query import LogsQuery
from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import (
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    Ledger,
    LedgerError,
    LedgerRecord,
    LedgerStatus,
)
from backupwarden.domain.alert_rules import BACKUP_FAILED, AlertRuleDefinition, rule_named
from backupwarden.domain.alerts import AZURE_BACKUP, AlertNotice, InvalidAlert, read_alert
from backupwarden.domain.arm_ids import arm_key, same_arm_id
from backupwarden.domain.json_text import json_items
from backupwarden.domain.kql import load_kql
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.remediation_rules import (
    Failure,
    LiveItem,
    RemediationPolicy,
    Remedy,
    RetryHistory,
    decide_remediation,
)
from backupwarden.domain.times import parse_time, utc_now
from backupwarden.flows.backup_now import LEDGER_ACTION as BACKUP_LEDGER_ACTION
from backupwarden.flows.backup_now import (
    BackupTarget,
    backup_now,
    settle_todays_trigger,
    todays_trigger,
)
from backupwarden.flows.remediation.messages import RemediationWorkItem
from backupwarden.flows.run_report import RunReport, action_outcome, run_outcome

logger = logging.getLogger(__name__)

ACTION = "remediate"
RUN_ACTION = "remediation_run"  # one record per work item handled: its health (completed, partial, failed)
RETRY_LEDGER_ACTION = "remediate"
STILL_UNPROTECTED_CODE = "StillUnprotected"  # pseudo error code of the "still unprotected" rule's rows
BUILT_IN_ALERT_LOOKBACK = timedelta(hours=1)  # Azure Backup's own alerts carry no query window
MAX_ALERT_WINDOW = timedelta(days=2)  # the longest query range Azure Monitor allows a log search alert

# Where decisions go as they are made (the outbox, through the action recorder).
RecordDecisions = Callable[[list[Outcome]], None]


@dataclass(frozen=True)
class RemediationConfig:
    policy: RemediationPolicy
    recovery_point_expiry: timedelta
    dry_run: bool = False


class Remediation:
    def __init__(
        self,
        logs: LogsQuery,
        recovery: RecoveryServices,
        ledger: Ledger,
        config: RemediationConfig,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._logs = logs
        self._recovery = recovery
        self._ledger = ledger
        self._config = config
        self._now = now

    def handle_item(
        self,
        item: RemediationWorkItem,
        run_id: str | None = None,
        record: RecordDecisions | None = None,
        *,
        redelivered: bool = False,
    ) -> list[Outcome]:
        """A work item the webhook enqueued (only Fired alerts are)."""
        return self.handle(item.notice(), run_id, record, redelivered=redelivered)

    def handle(
        self,
        alert: AlertNotice,
        run_id: str | None = None,
        record: RecordDecisions | None = None,
        *,
        redelivered: bool = False,
    ) -> list[Outcome]:
        """Every decision about the alert. `record`: where each goes as soon as it is made, so a
        delivery killed part-way keeps the record of what it did. `run_id`: the same for every
        delivery of one work item, so a redelivery (`redelivered`) finds what an earlier one did."""
        run_id = run_id or str(uuid.uuid4())
        outcomes: list[Outcome] = []

        def decided(outcome: Outcome) -> None:
            outcomes.append(outcome)
            if record is not None:
                record([outcome])

        self._decide(alert, run_id, redelivered, decided)
        return outcomes

    def _decide(
        self, alert: AlertNotice, run_id: str, redelivered: bool, decided: Callable[[Outcome], None]
    ) -> None:
        if alert.monitor_condition != "Fired":
            reason = f"alert {alert.alert_id} resolved: recorded only"
            decided(action_outcome(run_id, "", "", ACTION, Result.SKIPPED, reason))
            return
        rule = BACKUP_FAILED if alert.monitoring_service == AZURE_BACKUP else rule_named(alert.rule)
        if rule is None:
            reason = f"alert rule {alert.rule[:200]!r} is not ours"
            decided(action_outcome(run_id, "", "", ACTION, Result.ESCALATED, reason))
            return
        if not rule.remediates:
            reason = f"{rule.name}: {rule.description}"
            decided(action_outcome(run_id, "", "", ACTION, Result.ESCALATED, reason))
            return
        failures = self._failures(alert, rule)
        if not failures:
            reason = "no failure in the alert's window any more"
            decided(action_outcome(run_id, "", "", ACTION, Result.SKIPPED, reason))
            return
        for failure in failures:
            try:
                decided(self._remediate(failure, run_id, redelivered))
            except AzureCallError as exc:
                decided(
                    action_outcome(
                        run_id,
                        failure.vm_id,
                        failure.vault_id,
                        ACTION,
                        Result.FAILED,
                        f"{exc.step} failed",
                        error=exc,
                    )
                )

    # --- which failures ---------------------------------------------------------------------
    def _failures(self, alert: AlertNotice, rule: AlertRuleDefinition) -> list[Failure]:
        rows = self._logs.rows(load_kql(rule.kql_name), _query_span(alert, rule), step=f"query {rule.name}")
        wanted = {name: value for name, value in alert.dimensions}
        latest: dict[str, Failure] = {}
        for row in rows:
            if any(not same_arm_id(str(row.get(name, "")), value) for name, value in wanted.items()):
                continue
            if alert.monitoring_service == AZURE_BACKUP and not _targets(alert, row):
                continue
            failure = _failure(row, rule)
            current = latest.get(failure.vm_id)
            if failure.vm_id and (current is None or failure.failed_at > current.failed_at):
                latest[failure.vm_id] = failure
        return sorted(latest.values(), key=lambda f: f.vm_id)

    # --- what to do about one -----------------------------------------------------------------
    def _remediate(self, failure: Failure, run_id: str, redelivered: bool) -> Outcome:
        now = self._now()
        vault = VaultRef.parse(failure.vault_id)
        resource_group, vm_name = _vm_parts(failure.vm_id)
        container, item = item_names(resource_group, vm_name)
        target = BackupTarget(failure.vm_id, vault, container, item)
        earlier = self._earlier_retry(failure, target, run_id, now)
        if earlier is not None:  # decided before the retry: the live item and history now show it
            return earlier
        decision = decide_remediation(
            failure,
            self._live(vault, container, item),
            self._history(failure.vm_id, now),
            self._config.policy,
            now,
        )
        vault_id = arm_key(vault.id)
        if decision.remedy is Remedy.ESCALATE:
            return action_outcome(
                run_id,
                failure.vm_id,
                vault_id,
                ACTION,
                Result.ESCALATED,
                decision.reason,
                error_code=failure.error_code,
            )
        if decision.remedy is Remedy.RESOLVED:
            return action_outcome(run_id, failure.vm_id, vault_id, ACTION, Result.RESOLVED, decision.reason)
        if decision.remedy is Remedy.NOOP:
            return action_outcome(run_id, failure.vm_id, vault_id, ACTION, Result.SKIPPED, decision.reason)
        if self._config.dry_run:
            return action_outcome(
                run_id, failure.vm_id, vault_id, ACTION, Result.DRY_RUN, f"would retry: {decision.reason}"
            )
        return self._retry(failure, target, decision.reason, run_id, now, redelivered)

    def _retry(
        self,
        failure: Failure,
        target: BackupTarget,
        reason: str,
        run_id: str,
        now: datetime,
        redelivered: bool,
    ) -> Outcome:
        """One retry per failed job, however many alerts report it; a retry that did not start (refused,
        already running, budget) leaves the failed job to a later alert.

        The claims an earlier delivery of this run died holding are carried on (`_abandoned`)."""
        fix: Claim | None = None
        if failure.job_id:
            key = _fix_key(failure)
            try:
                fix = self._ledger.claim(failure.vm_id, key, now.date(), run_id, max_attempts=1)
            except (AlreadyClaimed, BudgetExhausted):
                held = self._ledger.record(failure.vm_id, key, now.date())
                if held is not None and _abandoned(held, run_id, redelivered):
                    fix = held.as_claim()
            if fix is None:
                return action_outcome(
                    run_id,
                    failure.vm_id,
                    arm_key(target.vault.id),
                    ACTION,
                    Result.SKIPPED,
                    f"failed job {failure.job_id} already remediated",
                )
        try:
            outcome = self._trigger_retry(failure, target, reason, run_id, now, redelivered)
        except BaseException:
            if fix is not None:
                with contextlib.suppress(LedgerError):
                    self._ledger.release(fix)
            raise
        if fix is not None:
            if outcome.result is Result.TRIGGERED:
                self._ledger.complete(fix, "")  # no job id: the retry's job is recorded by its backup's claim
            else:
                self._ledger.release(fix)
        return outcome

    def _trigger_retry(
        self,
        failure: Failure,
        target: BackupTarget,
        reason: str,
        run_id: str,
        now: datetime,
        redelivered: bool,
    ) -> Outcome:
        vault_id = arm_key(target.vault.id)
        today = todays_trigger(self._ledger, self._recovery, target.vault, failure.vm_id, now)
        settle_todays_trigger(self._ledger, today)  # the failed job's key may be claimed for the retry
        try:
            count = self._ledger.claim(
                failure.vm_id,
                RETRY_LEDGER_ACTION,
                now.date(),
                run_id,
                max_attempts=self._config.policy.daily_budget,
            )
        except (AlreadyClaimed, BudgetExhausted) as exc:
            held = self._ledger.record(failure.vm_id, RETRY_LEDGER_ACTION, now.date())
            if held is None or not _abandoned(held, run_id, redelivered):
                return action_outcome(
                    run_id, failure.vm_id, vault_id, ACTION, Result.SKIPPED, f"retry not claimed: {exc}"
                )
            count = held.as_claim()
        backup = today.record
        abandoned = backup if backup is not None and _abandoned(backup, run_id, redelivered) else None
        done = backup_now(
            self._ledger,
            self._recovery,
            target,
            run_id=run_id,
            now=now,
            daily_budget=self._config.policy.daily_budget,
            expiry=now + self._config.recovery_point_expiry,
            triggered_by="Remediation",
            claim=abandoned.as_claim() if abandoned else None,
            earlier_attempt_at=abandoned.updated if abandoned else None,
        )
        if done.result is Result.TRIGGERED:
            # settled as "may be claimed again": the key counts retries (attempts) up to the budget
            self._ledger.fail(count, f"retried with job {done.job_id or 'unknown'}", job_id=done.job_id)
            return action_outcome(
                run_id,
                failure.vm_id,
                vault_id,
                ACTION,
                Result.TRIGGERED,
                f"{reason}; {done.reason}",
                job_id=done.job_id,
                error_code=failure.error_code,
            )
        self._ledger.release(count)
        return action_outcome(
            run_id,
            failure.vm_id,
            vault_id,
            ACTION,
            done.result,
            f"{reason}; {done.reason}",
            error=done.error,
            error_code=failure.error_code,
        )

    def _earlier_retry(
        self, failure: Failure, target: BackupTarget, run_id: str, now: datetime
    ) -> Outcome | None:
        """The retry of this failed job an earlier delivery of this run triggered, stated again with its
        backup's job: that delivery may have died before recording it, and the record this one writes
        replaces its record (same run, VM and action), so a `skipped` would hide the retry."""
        if not failure.job_id:
            return None
        fix = self._ledger.record(failure.vm_id, _fix_key(failure), now.date())
        if fix is None or fix.run_id != run_id or fix.status is not LedgerStatus.COMPLETED:
            return None
        backup = self._ledger.record(failure.vm_id, BACKUP_LEDGER_ACTION, now.date())
        job_id = backup.job_id if backup is not None and backup.run_id == run_id else ""
        return action_outcome(
            run_id,
            failure.vm_id,
            arm_key(target.vault.id),
            ACTION,
            Result.TRIGGERED,
            f"an earlier delivery retried failed job {failure.job_id}; backup job {job_id or 'unknown yet'}",
            job_id=job_id or None,
            error_code=failure.error_code,
        )

    def _live(self, vault: VaultRef, container: str, item: str) -> LiveItem:
        try:
            raw = self._recovery.protected_item(vault, container, item)
        except AzureCallError as exc:
            if exc.not_found:
                return LiveItem(exists=False)
            raise
        properties = raw.get("properties") or {}
        last = properties.get("lastBackupTime")
        return LiveItem(
            exists=True,
            last_backup_status=str(properties.get("lastBackupStatus", "")),
            last_backup_time=parse_time(last) if last else None,
        )

    def _history(self, vm_id: str, now: datetime) -> RetryHistory:
        record = self._ledger.record(vm_id, RETRY_LEDGER_ACTION, now.date())
        if record is None:
            return RetryHistory(retries_today=0)
        return RetryHistory(retries_today=record.attempts, last_retry_at=record.updated)


def _fix_key(failure: Failure) -> str:
    """The ledger action that allows one retry per failed job."""
    return f"fix-{arm_key(failure.job_id)}"


def _abandoned(record: LedgerRecord, run_id: str, redelivered: bool) -> bool:
    """A claim an earlier delivery of this run died holding."""
    return redelivered and record.run_id == run_id and record.status is LedgerStatus.IN_PROGRESS


def _query_span(alert: AlertNotice, rule: AlertRuleDefinition) -> tuple[datetime, datetime]:
    """The time range the rule's query re-runs over: the alert's window, at most as long as the rule's
    (itself at most Azure Monitor's longest), so a broken or forged window of years never reaches
    Log Analytics; a window missing, too long or ending before it starts becomes the rule's."""
    lookback = BUILT_IN_ALERT_LOOKBACK if alert.monitoring_service == AZURE_BACKUP else rule.window
    lookback = min(lookback, MAX_ALERT_WINDOW)
    end = alert.window_end or alert.fired_at
    try:
        earliest = end - lookback
    except OverflowError:  # an end within the lookback of year 1
        earliest = datetime.min.replace(tzinfo=end.tzinfo)
    start = alert.window_start
    if start is None or not earliest <= start <= end:
        if start is not None:
            logger.warning(
                "alert window out of bounds; querying the rule's window",
                extra={"alert_id": alert.alert_id, "window_start": str(start), "window_end": str(end)},
            )
        start = earliest
    return start, end


def _failure(row: dict[str, Any], rule: AlertRuleDefinition) -> Failure:
    code = str(row.get("ErrorCode") or "")
    if rule.name != BACKUP_FAILED.name and not code:
        code = STILL_UNPROTECTED_CODE
    return Failure(
        vm_id=arm_key(str(row.get("VmId", ""))),
        vault_id=arm_key(str(row.get("VaultId", ""))),
        error_code=code,
        failed_at=parse_time(row.get("EndTime") or row.get("TimeGenerated")),
        job_id=str(row.get("JobId") or ""),
        recommendation=str(row.get("Recommendation") or ""),
    )


def _targets(alert: AlertNotice, row: dict[str, Any]) -> bool:
    """An Azure Backup alert targets its vault or VM: keep rows of those."""
    targets = {arm_key(t) for t in alert.target_ids}
    return (
        not targets
        or arm_key(str(row.get("VaultId", ""))) in targets
        or arm_key(str(row.get("VmId", ""))) in targets
    )


def _vm_parts(vm_id: str) -> tuple[str, str]:
    parts = vm_id.strip("/").split("/")
    lowered = [arm_key(p) for p in parts]
    return parts[lowered.index("resourcegroups") + 1], parts[-1]


def remediation_run_record(
    run_id: str, alert_id: str, outcomes: list[Outcome], error: AzureCallError | None = None
) -> Outcome:
    """One work item's run: `failed` when its alert's rows could not be read (the queue redelivers it),
    `partial` when a decision failed, else `completed`."""
    summary = f"alert {alert_id[-200:]}: {len(outcomes)} decisions"
    failure = None
    if error is not None:
        reason = f"{error.step} failed"
        failure = action_outcome(run_id, "", "", RUN_ACTION, Result.FAILED, reason, error=error)
    return run_outcome(run_id, RUN_ACTION, outcomes, summary, failure)


def read_alerts(text: str) -> list[AlertNotice]:
    """One common-alert-schema payload or a JSON array of them; InvalidAlert names what is wrong."""
    payloads = json_items(text, InvalidAlert)
    try:
        return [read_alert(payload) for payload in payloads]
    except RecursionError:  # nested just shallow enough to parse, too deep to describe
        raise InvalidAlert("an alert is nested too deeply") from None


def remediate_alerts(alerts: list[AlertNotice], remediation: Remediation, *, dry_run: bool) -> RunReport:
    """The CLI's path: every alert to its outcomes, without the queue.

    Each alert is its own remediation run, as a queue message is: a decision's record id is derived
    from (run, VM, action), so two alerts' decisions about one VM, or about none, must not share a run.
    """
    report = RunReport(str(uuid.uuid4()), dry_run, utc_now(), candidates=len(alerts))
    for alert in alerts:
        report.outcomes.extend(remediation.handle(alert))
    report.finished = utc_now()
    return report
