"""Coverage as a figure: of the VMs in scope, how many have a recovery point within their RPO.

In scope: every classified VM except those excluded by tag; an orphaned item is not a VM (its VM is
gone), so it counts nowhere. A VM in scope is covered when its newest recovery point is within its
policy's RPO plus the tolerance, whatever its state (a VM whose protection just failed, or was
stopped yesterday, is still recoverable from that point).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from backupwarden.domain.protection_states import Classification, VmState

OUT_OF_SCOPE = frozenset({VmState.EXCLUDED, VmState.ORPHANED})


@dataclass(frozen=True)
class CoverageFigure:
    scope: str  # "total", a subscription id or a region
    in_scope: int
    covered: int

    @property
    def percent(self) -> float | None:
        """None when no VM is in scope: 100% would report a success nobody earned and 0% a failure
        that is not there; None lets an alert treat it as "no data"."""
        if self.in_scope == 0:
            return None
        return 100.0 * self.covered / self.in_scope


@dataclass(frozen=True)
class CoverageReport:
    total: CoverageFigure
    by_subscription: tuple[CoverageFigure, ...]  # sorted by subscription id
    by_region: tuple[CoverageFigure, ...]  # sorted by region
    worst_offenders: tuple[Classification, ...]  # uncovered VMs, longest without a recovery point first


@dataclass(frozen=True)
class CoveragePoint:
    """The total coverage one run measured: a point of the coverage-over-time chart."""

    at: datetime
    in_scope: int
    covered: int

    @property
    def percent(self) -> float | None:
        return CoverageFigure("total", self.in_scope, self.covered).percent


def in_scope(classification: Classification) -> bool:
    return classification.state not in OUT_OF_SCOPE


def coverage(classified: Iterable[Classification], *, worst: int = 10) -> CoverageReport:
    vms = [c for c in classified if in_scope(c)]
    offenders = sorted((c for c in vms if not c.within_rpo), key=_offence)
    return CoverageReport(
        total=_figure("total", vms),
        by_subscription=_grouped(vms, lambda c: c.vm.subscription_id.lower()),
        by_region=_grouped(vms, lambda c: c.vm.region.lower()),
        worst_offenders=tuple(offenders[:worst]),
    )


def _grouped(vms: list[Classification], key: Callable[[Classification], str]) -> tuple[CoverageFigure, ...]:
    groups: dict[str, list[Classification]] = {}
    for vm in vms:
        groups.setdefault(key(vm), []).append(vm)
    return tuple(_figure(scope, members) for scope, members in sorted(groups.items()))


def _figure(scope: str, vms: list[Classification]) -> CoverageFigure:
    return CoverageFigure(scope, len(vms), sum(1 for vm in vms if vm.within_rpo))


def _offence(c: Classification) -> tuple[int, timedelta, str]:
    """Unknown time without a recovery point first (nothing shows it ever had one), then the longest."""
    known = c.time_without_recovery_point
    return (0 if known is None else 1, -(known or timedelta(0)), c.vm.id.lower())
