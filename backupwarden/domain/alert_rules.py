"""The log search alert rules backupwarden ships: their KQL lives in kql/, their settings here.

infra/ deploys these rules with the same KQL files (loadTextContent), the tests run the KQL against
the emulator's workspace, and remediation re-runs a rule's KQL over the window of its alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class AlertRuleDefinition:
    name: str
    kql_name: str  # kql/{kql_name}.kql
    frequency: timedelta
    window: timedelta
    operator: str  # GreaterThan, LessThan, ...
    threshold: float
    dimensions: tuple[str, ...]
    severity: int
    description: str
    remediates: bool  # whether its alerts go to the remediation worker's retry path


BACKUP_FAILED = AlertRuleDefinition(
    name="backupwarden-backup-failed",
    kql_name="alert_backup_failed",
    frequency=timedelta(minutes=5),
    # The longest query time range a log search alert has: a failure that reaches the table up to 2 days
    # after it ended still fires, once, as its own alert (one per JobId, stateful). docs/alerts.md
    window=timedelta(days=2),
    operator="GreaterThan",
    threshold=0,
    dimensions=("VmId", "ErrorCode", "JobId"),
    severity=1,
    description="A VM backup or configure-backup job failed.",
    remediates=True,
)
STILL_UNPROTECTED = AlertRuleDefinition(
    name="backupwarden-still-unprotected",
    kql_name="alert_still_unprotected",
    frequency=timedelta(hours=1),
    window=timedelta(days=2),
    operator="GreaterThan",
    threshold=0,
    dimensions=("VmId",),
    severity=2,
    description="A VM configured for backup over 24 hours ago still has no recovery point.",
    remediates=True,
)
AUTOMATION_SILENT = AlertRuleDefinition(
    name="backupwarden-automation-silent",
    kql_name="alert_automation_silent",
    frequency=timedelta(minutes=15),
    window=timedelta(hours=1),
    operator="LessThan",
    threshold=1,
    dimensions=(),
    severity=1,
    description="The sweep recorded no run for twice its schedule.",
    remediates=False,
)
# The automation's own health (docs/alerts.md, "Automation health"): a failed run of a flow, a flow gone
# quiet, and a decision a person must act on, each notification naming what and why.
FLOW_FAILED = AlertRuleDefinition(
    name="backupwarden-flow-failed",
    kql_name="alert_flow_failed",
    frequency=timedelta(minutes=5),
    window=timedelta(hours=6),
    operator="GreaterThan",
    threshold=0,
    dimensions=("Flow", "Cause"),
    severity=1,
    description="A run of the sweep, outcome shipping or remediation failed as a whole.",
    remediates=False,
)
FLOW_SILENT = AlertRuleDefinition(
    name="backupwarden-flow-silent",
    kql_name="alert_flow_silent",
    frequency=timedelta(minutes=15),
    window=timedelta(hours=6),
    operator="GreaterThan",
    threshold=0,
    dimensions=("Flow",),
    severity=1,
    description="Outcome shipping recorded no run, or enqueued new VMs got no outcome, for 30 minutes.",
    remediates=False,
)
AUTOMATION_PROBLEMS = AlertRuleDefinition(
    name="backupwarden-automation-problems",
    kql_name="alert_automation_problems",
    frequency=timedelta(minutes=5),
    window=timedelta(hours=6),
    operator="GreaterThan",
    threshold=0,
    dimensions=("VmId", "Result", "Reason", "Recommendation"),
    severity=2,
    description="A flow failed, escalated or found no vault for a VM, or a queue gave up on its work.",
    remediates=False,
)
# Coverage (docs/coverage.md, "In Log Analytics"): the latest coverage run's rows in BackupCoverage_CL.
# A day's window: a run a day keeps them evaluated; the reconciler acts on these VMs, so no remediation.
COVERAGE_BELOW_TARGET = AlertRuleDefinition(
    name="backupwarden-coverage-below-target",
    kql_name="alert_coverage_below_target",
    frequency=timedelta(hours=1),
    window=timedelta(days=1),
    operator="GreaterThan",
    threshold=0,
    dimensions=(),
    severity=1,
    description="Fewer VMs in scope have a recovery point within RPO than BACKUPWARDEN_COVERAGE_TARGET asks.",
    remediates=False,
)
VM_PAST_DEADLINE = AlertRuleDefinition(
    name="backupwarden-vm-past-deadline",
    kql_name="alert_vm_past_deadline",
    frequency=timedelta(hours=1),
    window=timedelta(days=1),
    operator="GreaterThan",
    threshold=0,
    dimensions=("VmId",),
    severity=2,
    description="A VM in scope has no recovery point within its RPO (new VMs and first backups excepted).",
    remediates=False,
)
ALERT_RULES = (
    BACKUP_FAILED,
    STILL_UNPROTECTED,
    AUTOMATION_SILENT,
    FLOW_FAILED,
    FLOW_SILENT,
    AUTOMATION_PROBLEMS,
    COVERAGE_BELOW_TARGET,
    VM_PAST_DEADLINE,
)


def rule_named(name: str) -> AlertRuleDefinition | None:
    """The rule an alert names (its alertRule is the rule's name, case as deployed)."""
    wanted = name.strip().lower()
    return next((rule for rule in ALERT_RULES if rule.name == wanted), None)
