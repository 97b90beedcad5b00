"""What a simulation is made of: the orders of a day, the agents and how they behave, and the
policies to compare. Plain dataclasses, no Django: a scenario is generated (`scenarios`) or
read from the database (`dispatch.sim.history`), then replayed by `dispatch.sim.run`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

from dispatch.engine.rounds import ScopedPolicy, resolve_policy
from dispatch.engine.types import PolicySpec

# Seconds are virtual: 0 is the scenario's `start`.
Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How an agent answers offers and works. Every draw comes from the run's seeded generator.

    - An offer is answered after a log-normal delay (median `response_median_seconds`, spread
      `response_sigma`); an answer later than the offer's window is no answer: it expires.
    - It is accepted with `acceptance` when the agent holds the skills it calls for, with
      `acceptance_unskilled` when not.
    - Work is done one item at a time, in the order accepted. An item takes its order's
      `work_minutes` times a skill factor: `level_factors[level - 1]` at the agent's (lowest)
      level in the skills it needs, `unskilled_factor` when they lack one, 1 when it needs none.
    - On-site work starts with travel from where the agent is, at `speed_kmh` over the
      straight-line distance times `road_factor`; the agent then stands at the customer's address.
    - An on-site job is fixed the first time with `fix_levels[level - 1]`, or `fix_unskilled`;
      when not, the customer calls again `revisit_after_minutes` later (a repeat repair).
    """

    acceptance: float = 0.95
    acceptance_unskilled: float = 0.6
    response_median_seconds: float = 40.0
    response_sigma: float = 0.8
    level_factors: tuple[float, float, float, float, float] = (1.3, 1.15, 1.0, 0.9, 0.8)
    unskilled_factor: float = 1.8
    speed_kmh: float = 25.0
    road_factor: float = 1.3
    fix_levels: tuple[float, float, float, float, float] = (0.8, 0.85, 0.9, 0.93, 0.96)
    fix_unskilled: float = 0.6
    revisit_after_minutes: float = 120.0

    def __post_init__(self) -> None:
        for name in ("acceptance", "acceptance_unskilled", "fix_unskilled"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value}")
        if not all(0.0 <= p <= 1.0 for p in self.fix_levels):
            raise ValueError(f"fix_levels must be probabilities, not {self.fix_levels}")
        if self.response_median_seconds < 0 or self.response_sigma < 0:
            raise ValueError("the response delay's median and spread cannot be negative")
        if min(self.level_factors) <= 0 or self.unskilled_factor <= 0:
            raise ValueError("work-time factors must be positive")
        if self.speed_kmh <= 0 or self.road_factor < 1:
            raise ValueError("travel speed must be positive and the road factor at least 1")


@dataclass(frozen=True, slots=True)
class SimAgent:
    """One person of the roster and when they work. Outside their shifts, and during breaks,
    they are offline; while `dark` they still look online but answer nothing and do no work
    (a phone with no signal, an app that crashed)."""

    id: int
    name: str
    capacity: int = 3
    skills: Mapping[str, int] = field(default_factory=dict)
    regions: frozenset[int] = frozenset()
    lat: float | None = None
    lng: float | None = None
    radius_km: float = 30.0
    dedicated_channels: frozenset[int] = frozenset()
    dedicated_customers: frozenset[int] = frozenset()
    good_rate_7d: float | None = None
    quality_weight: float = 0.5
    shifts: tuple[Interval, ...] = ((0.0, 86400.0),)
    breaks: tuple[Interval, ...] = ()
    dark: tuple[Interval, ...] = ()
    behaviour: Behaviour = field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"agent {self.id}: capacity must be at least 1, not {self.capacity}")
        for name in ("shifts", "breaks", "dark"):
            for start, end in getattr(self, name):
                if end < start:
                    raise ValueError(
                        f"agent {self.id}: a {name[:-1]} ends before it starts ({start} > {end})"
                    )


@dataclass(frozen=True, slots=True)
class SimOrder:
    """One order as dispatch sees it when it becomes ready, plus what the work will take."""

    id: int
    ready_seconds: float  # when it enters the pool
    due_seconds: float  # its SLA: work finished by then, or it breached
    work_minutes: float  # the work at skill factor 1 (before the agent's level and travel)
    channel_id: int | None = None
    region_id: int | None = None
    category: str = ""
    skills: frozenset[str] = frozenset()
    lat: float | None = None
    lng: float | None = None
    on_site: bool = False  # the agent travels to the address
    expedited: bool = False
    repeat_repair: bool = False
    vip: bool = False
    customer_id: int | None = None
    patience_minutes: float | None = None  # the customer cancels if nobody accepted by then
    label: str = ""  # the order's tag, for people


@dataclass(frozen=True, slots=True)
class Supervisor:
    """The supervisor works the manual queue (L2): each escalated item is assigned by hand
    `reaction_minutes` after it arrived there, to the online agent with free capacity who
    holds its skills, nearest and least loaded first (or, with `force_when_full`, to the least
    loaded online agent even if full). Nobody online: they look again `retry_minutes` later."""

    reaction_minutes: float = 10.0
    retry_minutes: float = 5.0
    force_when_full: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    """A day (or a week) to replay."""

    name: str
    start: datetime  # aware; virtual second 0
    horizon_seconds: float  # orders arrive before this; work may run on past it
    orders: Sequence[SimOrder]
    agents: Sequence[SimAgent]
    supervisor: Supervisor = field(default_factory=Supervisor)
    description: str = ""
    parameters: Mapping[str, object] = field(default_factory=dict)  # how it was made, for the report

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError(f"scenario {self.name!r} has no agents")
        if len({a.id for a in self.agents}) != len(self.agents):
            raise ValueError(f"scenario {self.name!r} lists an agent twice")
        if len({o.id for o in self.orders}) != len(self.orders):
            raise ValueError(f"scenario {self.name!r} lists an order twice")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The dispatch policies one simulated run follows: scoped policies as in admin, and the
    default for orders none of them covers. `PolicySet.single` is one policy for every order."""

    name: str
    policies: tuple[ScopedPolicy, ...] = ()
    default: ScopedPolicy = field(default_factory=lambda: ScopedPolicy(name="default", spec=PolicySpec()))

    @classmethod
    def single(
        cls, name: str, spec: PolicySpec, *, max_rounds: int = 3, l2_wait_seconds: int = 300
    ) -> PolicySet:
        return cls(
            name=name,
            default=ScopedPolicy(
                name=name, spec=spec, max_rounds=max_rounds, l2_wait_seconds=l2_wait_seconds
            ),
        )

    def for_order(self, order: SimOrder) -> ScopedPolicy:
        return resolve_policy(
            self.policies,
            self.default,
            channel_id=order.channel_id,
            category=order.category,
            region_id=order.region_id,
        )


Progress = Callable[[float], None]  # called with the share of virtual time simulated, 0..1


def parse_behaviour(settings: Sequence[str]) -> dict[str, object]:
    """`["acceptance=0.9", "level_factors=1.2,1.1,1,0.9,0.8"]` as `Behaviour` field values."""
    known = {f.name: f for f in fields(Behaviour)}
    values: dict[str, object] = {}
    for item in settings:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(
                f"{item!r} is not NAME=VALUE with a behaviour parameter; parameters: {', '.join(known)}"
            )
        try:
            if name in ("level_factors", "fix_levels"):
                numbers = tuple(float(v) for v in raw.split(","))
                if len(numbers) != 5:
                    raise ValueError
                values[name] = numbers
            else:
                values[name] = float(raw)
        except ValueError:
            shape = (
                "five numbers separated by commas" if name in ("level_factors", "fix_levels") else "a number"
            )
            raise ValueError(f"{name} must be {shape}, not {raw!r}") from None
    return values


def with_behaviour(scenario: Scenario, values: Mapping[str, object]) -> Scenario:
    """The scenario with these behaviour parameters set for every agent (checked by `Behaviour`)."""
    agents = [replace(a, behaviour=replace(a.behaviour, **values)) for a in scenario.agents]
    return replace(scenario, agents=agents, parameters={**scenario.parameters, "behaviour_set": dict(values)})
