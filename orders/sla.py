"""How long an order may stay in a stage: pure arithmetic over a snapshot of the SLA policies
(no Django, no database), shared by ingestion, transitions, the overdue scan and the simulator.

The evening rule ("晚8点后下单可延后1小时", seed 004) is read in the site's local time and
covers the evening only: an order entering at or after `evening_after` and before midnight
gets the extra time; one entering at 01:00 is a night order of the next day and gets none
(the rule is about orders placed late in the working day, not about the small hours)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo

from orders.states import Stage

STAGE_ALLOWANCE: dict[Stage, timedelta] = {
    Stage.PENDING_REVIEW: timedelta(hours=2),
    Stage.PICKING: timedelta(hours=4),
    Stage.SHIPPING: timedelta(hours=24),
    Stage.QUARANTINED: timedelta(hours=4),
    Stage.EXCEPTION: timedelta(hours=8),
}
EXPEDITED_FACTOR = 0.5


@dataclass(frozen=True)
class SlaRule:
    """One active SlaPolicy row, as plain values."""

    stage: str
    category: str
    allowance_minutes: int
    expedited_factor: float = EXPEDITED_FACTOR
    evening_after: time | None = None
    evening_extra_minutes: int = 0
    adjust_by_history: bool = False
    history_factor: float = 1.0
    history_min_factor: float = 0.8
    history_max_factor: float = 1.5

    @property
    def effective_history_factor(self) -> float:
        """The measured factor held to the policy's bounds; 1 when history is not used."""
        if not self.adjust_by_history:
            return 1.0
        return clamp(self.history_factor, self.history_min_factor, self.history_max_factor)

    def allowance(self, *, expedited: bool) -> timedelta:
        minutes = self.allowance_minutes * self.effective_history_factor
        if expedited:
            minutes *= self.expedited_factor
        return timedelta(seconds=round(minutes * 60))

    def evening_extra(self, entered_at: datetime, tz: tzinfo) -> timedelta:
        if self.evening_after is None or not self.evening_extra_minutes:
            return timedelta(0)
        if entered_at.astimezone(tz).time() >= self.evening_after:
            return timedelta(minutes=self.evening_extra_minutes)
        return timedelta(0)


@dataclass(frozen=True)
class SlaBook:
    """The active policies by (stage, category) and the zone their clock times are read in."""

    rules: Mapping[tuple[str, str], SlaRule] = field(default_factory=dict)
    tz: tzinfo = UTC

    def rule_for(self, stage: str, category: str) -> SlaRule | None:
        """Most specific wins: (stage, category), then (stage, any category)."""
        if category:
            rule = self.rules.get((stage, category))
            if rule is not None:
                return rule
        return self.rules.get((stage, ""))


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def due_at_for(
    *,
    stage: Stage | str,
    entered_at: datetime,
    expedited: bool,
    category: str = "",
    policies: SlaBook | None = None,
) -> datetime | None:
    """When an order entering `stage` at `entered_at` is due out of it; None for final stages.

    With a matching policy: allowance × history factor (if the policy adjusts by history,
    held to its bounds) × expedited factor (if expedited), plus the evening extra when the
    local time of `entered_at` is at or after the policy's evening time. Without one (or
    without `policies`): the stage's default allowance, halved when expedited."""
    stage = Stage(stage)
    if stage in (Stage.DONE, Stage.CANCELLED):
        return None
    rule = policies.rule_for(stage.value, (category or "").strip()) if policies is not None else None
    if rule is not None:
        return entered_at + rule.allowance(expedited=expedited) + rule.evening_extra(entered_at, policies.tz)
    allowance = STAGE_ALLOWANCE.get(stage)
    if allowance is None:
        return None
    if expedited:
        allowance = allowance * EXPEDITED_FACTOR
    return entered_at + allowance
