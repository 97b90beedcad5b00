"""Snapshots the dispatch engine decides over, and what it answers. Plain dataclasses, no
Django: the web process, the Celery workers and the simulator build these and call the same
engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AgentStatus(StrEnum):
    ONLINE = "online"
    BUSY = "busy"
    BREAK = "break"
    OFFLINE = "offline"


class PolicyKind(StrEnum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    SMART = "smart"


class Criterion(StrEnum):
    """Scores a smart policy combines, each in [0, 1] for one (task, agent slot) pair."""

    URGENCY = "urgency"  # expedited or repeat repair: the task is matched before others
    PROXIMITY = "proximity"  # within 5 km preferred
    SKILL = "skill"  # the agent's level in the skills the task calls for
    LOAD = "load"  # fewer than 2 active items preferred
    QUALITY = "quality"  # >= 90% good ratings in 7 days preferred
    RETURNING = "returning"  # the agent who served this customer last
    VIP = "vip"  # a VIP customer's dedicated agent
    CHANNEL_TEAM = "channel_team"  # an agent dedicated to the task's channel


class HardFilter(StrEnum):
    """Filters a policy may switch on. Online, free capacity and "never an agent who rejected
    or let this task expire" always apply."""

    # Every skill the task calls for if anyone on the roster holds them all, else at least one.
    SKILL = "skill"
    AREA = "area"  # the agent covers the task's region, or the task is within their radius
    CHANNEL_TEAM = "channel_team"  # if some agents are dedicated to the channel, only them


class WaitReason(StrEnum):
    """Why a task was not offered this round."""

    NO_QUALIFIED_AGENT = "no_qualified_agent"  # nobody on the roster passes the filters, in any status
    NONE_ONLINE = "none_online"  # qualified agents exist, none online
    ALL_AT_CAPACITY = "all_at_capacity"  # qualified online agents exist, all full
    OUTRANKED = "outranked"  # free qualified agents went to more urgent tasks this round


@dataclass(frozen=True, slots=True)
class AgentSnap:
    id: int
    status: AgentStatus
    capacity: int
    active: int  # live (offered or accepted) items now
    skills: Mapping[str, int] = field(default_factory=dict)  # skill code -> level 1..5
    regions: frozenset[int] = frozenset()  # region ids; empty covers every region
    lat: float | None = None
    lng: float | None = None
    radius_km: float = 30.0
    dedicated_channels: frozenset[int] = frozenset()
    good_rate_7d: float | None = None  # None: no ratings in 7 days
    quality_weight: float = 0.5  # 0..1, from the profile
    last_offer_at: float = 0.0  # epoch seconds of the last offer made to them; 0 never
    offers_today: int = 0


@dataclass(frozen=True, slots=True)
class TaskSnap:
    id: int  # the pool item's id
    kind: str = "order"  # order | inquiry | review
    channel_id: int | None = None
    region_id: int | None = None
    lat: float | None = None
    lng: float | None = None
    skills: frozenset[str] = frozenset()  # skill codes the task calls for (from keywords)
    expedited: bool = False
    repeat_repair: bool = False
    vip: bool = False
    dedicated_agents: frozenset[int] = frozenset()  # a VIP customer's dedicated agents
    last_agent_id: int | None = None  # who served this customer last
    excluded: frozenset[int] = frozenset()  # agents who rejected it or let it expire
    waiting_seconds: float = 0.0
    rounds: int = 0  # failed offer rounds so far


@dataclass(frozen=True, slots=True)
class PolicySpec:
    kind: PolicyKind = PolicyKind.SMART
    # Ordered (criterion, weight); earlier criteria matter more (their default weights are larger).
    criteria: tuple[tuple[Criterion, float], ...] = ()
    filters: frozenset[HardFilter] = frozenset({HardFilter.SKILL, HardFilter.AREA})
    shares: Mapping[int, float] = field(default_factory=dict)  # weighted: agent id -> share
    # Offer window: `offer_seconds` normally; when a round offers more than `burst_first`
    # items, the first `burst_first` get `burst_min_seconds`, later ones widen to `burst_max_seconds`.
    offer_seconds: int = 600
    burst_first: int = 100
    burst_min_seconds: int = 300
    burst_max_seconds: int = 900


@dataclass(frozen=True, slots=True)
class Offer:
    task_id: int
    agent_id: int
    score: float
    breakdown: Mapping[str, float]  # criterion -> weighted contribution; why this agent
    distance_km: float | None  # None when either side has no coordinates
    skill_match: bool  # the agent has every skill the task calls for (True when none needed)


@dataclass(frozen=True, slots=True)
class Waiting:
    task_id: int
    reason: WaitReason
    detail: str = ""  # e.g. the missing skill codes, for the human message


@dataclass(slots=True)
class MatchResult:
    offers: list[Offer] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
