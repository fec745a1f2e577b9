"""What the new-VM flow does with one VM, decided from what the service says about it."""

from __future__ import annotations

from dataclasses import dataclass

from backupwarden.domain.records import Result
from backupwarden.domain.sweep_rules import OPT_OUT_TAG, opted_out

STILL_PROVISIONING = frozenset({"creating", "updating", "migrating"})


@dataclass(frozen=True)
class NewVmDecision:
    """`proceed` means: choose a vault and enable protection. Otherwise `result` is the outcome."""

    proceed: bool
    result: Result | None
    reason: str


def decide_new_vm(
    *,
    exists: bool,
    provisioning_state: str,
    protected: bool,
    protected_by: str | None,
    tags: dict[str, str],
    provisioning_waits: int,
    max_provisioning_waits: int,
) -> NewVmDecision:
    if not exists:
        return NewVmDecision(False, Result.VM_GONE, "the VM no longer exists")
    state = provisioning_state.lower()
    if state in STILL_PROVISIONING:
        if provisioning_waits >= max_provisioning_waits:
            return NewVmDecision(
                False,
                Result.FAILED,
                f"still {provisioning_state} after {provisioning_waits} checks: given up",
            )
        return NewVmDecision(
            False, Result.REQUEUED, f"provisioning state is {provisioning_state}: checking later"
        )
    if state != "succeeded":
        return NewVmDecision(
            False, Result.SKIPPED, f"provisioning state is {provisioning_state or 'unknown'}"
        )
    if protected:
        return NewVmDecision(
            False, Result.ALREADY_PROTECTED, f"already protected by {protected_by or 'a vault'}"
        )
    if opted_out(tags):
        return NewVmDecision(False, Result.SKIPPED, f"opted out by tag {OPT_OUT_TAG}")
    return NewVmDecision(True, None, "unprotected")
