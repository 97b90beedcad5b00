"""Default time allowed in each stage. Pure arithmetic; SLA policies in admin refine it."""

from __future__ import annotations

from datetime import datetime, timedelta

from orders.states import Stage

STAGE_ALLOWANCE: dict[Stage, timedelta] = {
    Stage.PENDING_REVIEW: timedelta(hours=2),
    Stage.PICKING: timedelta(hours=4),
    Stage.SHIPPING: timedelta(hours=24),
    Stage.QUARANTINED: timedelta(hours=4),
    Stage.EXCEPTION: timedelta(hours=8),
}
EXPEDITED_FACTOR = 0.5


def due_at_for(*, stage: Stage, entered_at: datetime, expedited: bool) -> datetime | None:
    """When an order entering `stage` at `entered_at` is due out of it; None for final stages."""
    allowance = STAGE_ALLOWANCE.get(stage)
    if allowance is None:
        return None
    if expedited:
        allowance = allowance * EXPEDITED_FACTOR
    return entered_at + allowance
