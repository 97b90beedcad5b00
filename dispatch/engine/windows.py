"""How long an offer stays open before it expires and the item goes back to the pool."""

from __future__ import annotations

from dispatch.engine.types import PolicySpec


def offer_window_seconds(position: int, offers_this_round: int, policy: PolicySpec) -> int:
    """Seconds the agent has to accept the offer at `position` (0-based, in priority order) of a
    round that makes `offers_this_round` offers.

    A normal round gives every offer `policy.offer_seconds`. A burst (more than `burst_first`
    offers in one round) answers seed 000's pressure test, where a flat 10 minutes let 300 orders
    pile up: the first `burst_first` offers get the short `burst_min_seconds` so the most urgent
    items fail fast and go round again, and later ones widen linearly to `burst_max_seconds`,
    reached at position 2 * burst_first and kept from there ("前100单5分钟确认, 后续逐步延长至15分钟"),
    so agents are not asked to answer hundreds of offers in the same five minutes.
    """
    if offers_this_round < 1:
        raise ValueError(f"a round with an offer makes at least one, not {offers_this_round}")
    if not 0 <= position < offers_this_round:
        raise ValueError(f"position {position} is outside a round of {offers_this_round} offers")
    first = policy.burst_first
    if first <= 0 or offers_this_round <= first:
        return policy.offer_seconds
    if position < first:
        return policy.burst_min_seconds
    # Position `first` is already one step wider than the short window; 2 * first is the widest.
    fraction = min(1.0, (position - first + 1) / (first + 1))
    span = policy.burst_max_seconds - policy.burst_min_seconds
    return round(policy.burst_min_seconds + fraction * span)
