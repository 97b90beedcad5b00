"""One matching round over the whole waiting pool, and the escalation rules around it: which
policy each task follows, the per-policy matches sharing the roster's capacity, and when a
task leaves automatic matching for the supervisor. The Celery tick (`dispatch.services`) and
the simulator (`dispatch.sim`) both plan their rounds here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dispatch.engine.matcher import match
from dispatch.engine.types import (
    AgentSnap,
    AgentStatus,
    MatchResult,
    Offer,
    PolicySpec,
    TaskSnap,
    Waiting,
    WaitReason,
)
from dispatch.engine.windows import offer_window_seconds

REVIEW_SKILL = "risk_review"  # the skill a risk review task asks for
TICK_LIMIT = 1000  # waiting items one round takes on, most urgent then oldest first
# A round that used a whole page and still has agents with free slots reads the next page, up
# to this many: otherwise a backlog at the head (one region or skill whose agents are all busy)
# keeps a free agent elsewhere idle while its orders wait further back (tests/chaos/test_burst.py
# showed 7,520 of 10,000 never reached). Bounded, so a round holds at most this many pages' locks.
ROUND_PAGES = 5


def has_free_slot(agents: Sequence[AgentSnap], offers: Sequence[Offer]) -> bool:
    """Whether an online agent still has room once these offers are counted."""
    taken: dict[int, int] = defaultdict(int)
    for offer in offers:
        taken[offer.agent_id] += 1
    return any(a.status == AgentStatus.ONLINE and a.active + taken[a.id] < a.capacity for a in agents)


@dataclass(frozen=True, slots=True)
class ScopedPolicy:
    """A policy and the orders it is for: a channel, a service type (the order's category) and
    a region, each None or "" for any. The most specific one that matches a task wins; equally
    specific ones are decided by name."""

    name: str
    spec: PolicySpec
    channel_id: int | None = None
    service_type: str = ""
    region_id: int | None = None
    max_rounds: int = 3  # failed offer rounds before the supervisor takes over (L2)
    l2_wait_seconds: int = 300  # waiting this long with no qualified agent online is an L2 too

    def specificity(self, *, channel_id: int | None, category: str, region_id: int | None) -> int:
        """How many of the three scopes this policy names, or -1 when one of them excludes the task."""
        if self.channel_id is not None and self.channel_id != channel_id:
            return -1
        if self.service_type and self.service_type != category:
            return -1
        if self.region_id is not None and self.region_id != region_id:
            return -1
        return (self.channel_id is not None) + bool(self.service_type) + (self.region_id is not None)


def resolve_policy(
    policies: Sequence[ScopedPolicy],
    default: ScopedPolicy,
    *,
    channel_id: int | None,
    category: str,
    region_id: int | None,
) -> ScopedPolicy:
    """The most specific policy whose scope covers the task, else `default`."""
    best, best_score = default, -1
    for policy in policies:
        score = policy.specificity(channel_id=channel_id, category=category, region_id=region_id)
        if score > best_score or (score == best_score and score >= 0 and policy.name < best.name):
            best, best_score = policy, score
    return best


@dataclass(slots=True)
class RoundGroup:
    """Tasks of one round that follow the same policy. `review` groups are risk reviews, the only
    work a reviewer whose one skill is risk review is ever offered."""

    policy: PolicySpec
    tasks: list[TaskSnap] = field(default_factory=list)
    review: bool = False


def plan_round(groups: Sequence[RoundGroup], agents: Sequence[AgentSnap], *, now: float) -> MatchResult:
    """Match every group against the one roster: a group's offers take capacity before the next
    group is matched, so no agent gets more than their free slots across policies. A reviewer
    whose only skill is `risk_review` works the review desk and is left out of other groups."""
    result = MatchResult()
    used: dict[int, int] = defaultdict(int)
    desk_only = {a.id for a in agents if set(a.skills) == {REVIEW_SKILL}}
    for group in groups:
        if not group.tasks:
            continue
        snaps = [replace(a, active=a.active + used[a.id]) if used.get(a.id) else a for a in agents]
        if desk_only and not group.review:
            snaps = [a for a in snaps if a.id not in desk_only]
        matched = match(group.tasks, snaps, group.policy, now=now)
        for offer in matched.offers:
            used[offer.agent_id] += 1
        result.offers.extend(matched.offers)
        result.waiting.extend(matched.waiting)
    return result


def offer_windows(offers: Sequence[Offer], policy_of: dict[int, PolicySpec]) -> list[int]:
    """Seconds each offer of the round stays open, by its position in the round's priority order
    (`offers` sorted most urgent first); `policy_of` maps a task id to its policy."""
    return [
        offer_window_seconds(position, len(offers), policy_of[offer.task_id])
        for position, offer in enumerate(offers)
    ]


def needs_supervisor(item: Waiting, *, waited_seconds: float, l2_wait_seconds: float) -> bool:
    """L2 for a task that got no offer: nobody qualifies at all, or nobody qualified has been
    online for the policy's wait. Qualified agents merely all full (a burst) is a queue, not an
    escalation."""
    return item.reason == WaitReason.NO_QUALIFIED_AGENT or (
        item.reason == WaitReason.NONE_ONLINE and waited_seconds >= l2_wait_seconds
    )


def rounds_exhausted(rounds: int, *, max_rounds: int) -> bool:
    """L2 after a failed round (a reject or an expiry): the policy's rounds are used up."""
    return rounds >= max_rounds
