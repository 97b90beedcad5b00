"""Generated days to simulate, by name: a normal day, Double 11 with its evening peak, and a
storm in which agents go dark. Everything is drawn from one seeded generator.

The world they share (Shanghai, three service regions): a desk team working orders online —
presale questions, apparel after-sales, logistics, invoices and refunds, cold-chain fresh
food, appliance after-sales — and field engineers who install and repair at the customer's
address. Each desk agent holds three or four of the six desk skills at levels 2-5; each
engineer both field skills. Orders come from three marketplaces; a few are expedited, some
customers are VIP with their own agents, some come back during the day.

SLA (the order's first stage, pending review): 120 minutes, 60 for cold-chain fresh food,
half for expedited orders, an hour more for orders arriving from 20:00 (seed 004), computed
by `orders.sla` as the live system computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from dispatch.sim.model import Behaviour, Scenario, SimAgent, SimOrder, Supervisor
from orders.sla import SlaBook, SlaRule, due_at_for

TZ = ZoneInfo("Asia/Shanghai")
DAY = 86400.0

# (code, name, latitude, longitude, region)
DISTRICTS = (
    ("huangpu", "黄浦", 31.2317, 121.4846, 2),
    ("xuhui", "徐汇", 31.1886, 121.4365, 2),
    ("changning", "长宁", 31.2204, 121.4241, 2),
    ("jingan", "静安", 31.2286, 121.4480, 2),
    ("putuo", "普陀", 31.2491, 121.3975, 2),
    ("hongkou", "虹口", 31.2646, 121.5052, 2),
    ("yangpu", "杨浦", 31.2596, 121.5260, 2),
    ("pudong", "浦东", 31.2214, 121.5447, 1),
    ("zhangjiang", "张江", 31.2040, 121.5990, 1),
    ("minhang", "闵行", 31.1129, 121.3817, 3),
    ("baoshan", "宝山", 31.4050, 121.4898, 3),
    ("songjiang", "松江", 31.0322, 121.2277, 3),
)
DISTRICT_WEIGHTS = (8, 10, 7, 8, 7, 6, 8, 16, 6, 10, 7, 7)
OFFICE = (31.1950, 121.4370)  # the desk team's office, Xuhui

# category: (skill, share of desk orders or None for on-site, mean work minutes)
DESK_CATEGORIES = {
    "presale": ("presale", 0.25),
    "apparel": ("apparel", 0.20),
    "logistics": ("logistics", 0.20),
    "billing": ("billing", 0.10),
    "fresh_food": ("fresh_food", 0.10),
    "appliance": ("appliance", 0.15),
}
ON_SITE_CATEGORIES = {"install": ("install", 0.5, 35.0), "repair": ("repair", 0.5, 25.0)}
CHANNELS = ((1, 0.5), (2, 0.3), (3, 0.2))  # taobao, jd, douyin

SLA_BOOK = SlaBook(
    rules={
        ("pending_review", ""): SlaRule(
            "pending_review", "", 120, evening_after=time(20, 0), evening_extra_minutes=60
        ),
        ("pending_review", "fresh_food"): SlaRule(
            "pending_review", "fresh_food", 60, evening_after=time(20, 0), evening_extra_minutes=60
        ),
    },
    tz=TZ,
)


@dataclass(frozen=True)
class Shift:
    start_hour: float
    end_hour: float  # may pass 24: the shift runs past midnight
    count: int
    break_window: tuple[float, float]  # the meal break starts somewhere in these hours
    break_minutes: float = 30.0


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    desk_orders: int
    on_site_orders: int
    desk_weights: tuple[float, ...]  # 24 hourly arrival weights for desk orders
    on_site_hours: tuple[float, float]  # on-site requests arrive evenly in these hours
    desk_work_minutes: float
    desk_shifts: tuple[Shift, ...]
    engineer_shifts: tuple[Shift, ...]
    dark_share: float = 0.0  # share of agents who go dark once during the day
    dark_minutes: tuple[float, float] = (30.0, 120.0)
    dark_hours: tuple[float, float] = (10.0, 20.0)
    expedited_share: float = 0.05
    vip_share: float = 0.03
    patience_median_minutes: float | None = 60.0


# Double 11 (双11): a 3x evening peak 20:00-23:00; everyone on long shifts and no breaks in the
# peak. Desk work is sized so that the desk team is ~90% busy in the peak (at level 3):
# 9,880 desk orders over 25.15 weight-hours is 393 an hour at weight 1, 1,178 an hour at the
# peak; 1,178 x 1.38 min / 60 = 27.1 agents busy of the 30 on shift.
_DOUBLE11_WEIGHTS = (
    (0.6, 0.4, 0.15, 0.15, 0.15, 0.15, 0.15, 0.3, 0.6) + (1.0,) * 10 + (2.0, 3.0, 3.0, 3.0, 1.5)
)
_NORMAL_WEIGHTS = (0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.7) + (1.0,) * 10 + (1.3, 1.5, 1.5, 1.0, 0.6)

_NORMAL_DAY = Preset(
    name="normal_day",
    description="An ordinary weekday: 5,000 orders, a mild evening rise, desk team about 55% busy.",
    desk_orders=4_940,
    on_site_orders=60,
    desk_weights=_NORMAL_WEIGHTS,
    on_site_hours=(9.0, 18.0),
    desk_work_minutes=2.2,
    desk_shifts=(
        Shift(8.0, 17.0, 12, (11.5, 13.5)),
        Shift(13.0, 22.0, 12, (16.5, 18.5)),
        Shift(21.0, 33.0, 3, (26.0, 29.0)),
        Shift(10.0, 19.0, 3, (12.0, 14.0)),
    ),
    engineer_shifts=(Shift(8.5, 19.5, 10, (12.0, 13.5), 45.0),),
)
PRESETS: dict[str, Preset] = {
    "normal_day": _NORMAL_DAY,
    "double11": Preset(
        name="double11",
        description=(
            "Double 11: 10,000 orders, a 3x evening peak (20:00-23:00) at about 90% of the desk "
            "team's capacity, long shifts, no breaks in the peak."
        ),
        desk_orders=9_880,
        on_site_orders=120,
        desk_weights=_DOUBLE11_WEIGHTS,
        on_site_hours=(9.0, 18.0),
        desk_work_minutes=1.38,
        desk_shifts=(
            Shift(8.0, 23.0, 12, (11.5, 13.5)),
            Shift(12.0, 25.0, 14, (16.5, 18.5)),
            Shift(19.0, 33.0, 4, (26.0, 29.0)),
        ),
        engineer_shifts=(Shift(8.5, 19.5, 10, (12.0, 13.5), 45.0),),
    ),
    "storm": replace(
        _NORMAL_DAY,
        name="storm",
        description=(
            "A normal day in a storm: a quarter of the agents go dark once for 30-120 minutes "
            "between 10:00 and 20:00 (they still look online but answer nothing)."
        ),
        dark_share=0.25,
    ),
}
PRESET_DATES = {"normal_day": "2026-11-04", "double11": "2026-11-11", "storm": "2026-07-15"}


def generate(name: str, *, seed: int = 1, orders: int | None = None, agents: int | None = None) -> Scenario:
    """The preset `name`, drawn with `seed`; `orders` and `agents` scale its volume and roster
    (the shifts keep their shares, the work keeps its length)."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    rng = np.random.default_rng(seed)
    start = datetime.fromisoformat(PRESET_DATES[name]).replace(tzinfo=TZ)
    base_total = preset.desk_orders + preset.on_site_orders
    order_scale = (orders / base_total) if orders else 1.0
    base_agents = sum(s.count for s in preset.desk_shifts + preset.engineer_shifts)
    agent_scale = (agents / base_agents) if agents else 1.0
    if order_scale <= 0 or agent_scale <= 0:
        raise ValueError("orders and agents must be positive")
    roster = _roster(preset, rng, agent_scale)
    vip_agents = tuple(a.id for a in roster if not a.skills.keys() & {"install", "repair"})[:2]
    roster = [_with_vips(a, vip_agents) for a in roster]  # the first two desk agents serve VIPs
    made = _orders(preset, rng, start, order_scale)
    return Scenario(
        name=name,
        start=start,
        horizon_seconds=DAY,
        orders=made,
        agents=roster,
        supervisor=Supervisor(),
        description=preset.description,
        parameters={
            "seed": seed,
            "orders": len(made),
            "agents": len(roster),
            "desk_work_minutes": preset.desk_work_minutes,
            "on_site_work_minutes": {k: v[2] for k, v in ON_SITE_CATEGORIES.items()},
            "sla": "pending review 120 min (fresh food 60), expedited x0.5, +60 min from 20:00",
            "patience_median_minutes": preset.patience_median_minutes,
            "dark_share": preset.dark_share,
            "behaviour": Behaviour().__repr__(),
        },
    )


VIP_CUSTOMERS = range(1, 41)


def _with_vips(agent: SimAgent, vip_agents: tuple[int, ...]) -> SimAgent:
    if agent.id not in vip_agents:
        return agent
    return replace(agent, dedicated_customers=frozenset(VIP_CUSTOMERS))


def _roster(preset: Preset, rng: np.random.Generator, scale: float) -> list[SimAgent]:
    agents: list[SimAgent] = []
    desk_skills = [skill for skill, _share in DESK_CATEGORIES.values()]
    skill_p = np.asarray([share for _skill, share in DESK_CATEGORIES.values()])
    skill_p = skill_p / skill_p.sum()
    # Engineers live where the work is: home districts spread by the districts' share of orders.
    district_p = np.asarray(DISTRICT_WEIGHTS, dtype=float) / sum(DISTRICT_WEIGHTS)
    engineers = sum(max(1, round(s.count * scale)) for s in preset.engineer_shifts)
    homes = np.argsort(-district_p)[:engineers].tolist()
    homes += rng.choice(len(DISTRICTS), size=max(0, engineers - len(homes)), p=district_p).tolist()
    surname = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"

    def next_id() -> int:
        return len(agents) + 1

    def shifts_of(shift: Shift) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """The shift and its meal break; a shift running past midnight also covers the start of
        the day, as the same shift of the day before is still on then."""
        begin, end = shift.start_hour * 3600, shift.end_hour * 3600
        lo, hi = shift.break_window
        at = rng.uniform(lo, hi) * 3600
        rest = (at, at + shift.break_minutes * 60)
        if end <= DAY:
            return ((begin, end),), (rest,)
        shifts = ((0.0, end - DAY), (begin, end))
        breaks = (rest, (rest[0] - DAY, rest[1] - DAY)) if rest[0] >= DAY else (rest,)
        return shifts, tuple((a, b) for a, b in breaks if b > 0)

    for shift in preset.desk_shifts:
        for _ in range(max(1, round(shift.count * scale))):
            # A team staffed for the day: skills are trained in proportion to what customers ask.
            held = rng.choice(len(desk_skills), size=int(rng.integers(3, 5)), replace=False, p=skill_p)
            skills = {desk_skills[k]: int(rng.integers(2, 6)) for k in sorted(held)}
            work, rest = shifts_of(shift)
            agent_id = next_id()
            agents.append(
                SimAgent(
                    id=agent_id,
                    name=f"{surname[agent_id % len(surname)]}客服{agent_id:02d}",
                    capacity=3,
                    skills=skills,
                    lat=OFFICE[0] + rng.uniform(-0.003, 0.003),
                    lng=OFFICE[1] + rng.uniform(-0.003, 0.003),
                    radius_km=60.0,
                    good_rate_7d=float(rng.uniform(0.8, 0.99)),
                    quality_weight=float(rng.uniform(0.45, 0.95)),
                    shifts=work,
                    breaks=rest,
                )
            )
    for shift in preset.engineer_shifts:
        for _ in range(max(1, round(shift.count * scale))):
            _code, _name, lat, lng, region = DISTRICTS[homes.pop(0)]
            work, rest = shifts_of(shift)
            agent_id = next_id()
            agents.append(
                SimAgent(
                    id=agent_id,
                    name=f"{surname[agent_id % len(surname)]}师傅{agent_id:02d}",
                    capacity=2,
                    skills={"install": int(rng.integers(2, 6)), "repair": int(rng.integers(2, 6))},
                    regions=frozenset({region}),
                    lat=lat + rng.uniform(-0.02, 0.02),
                    lng=lng + rng.uniform(-0.02, 0.02),
                    radius_km=25.0,
                    good_rate_7d=float(rng.uniform(0.8, 0.99)),
                    quality_weight=float(rng.uniform(0.45, 0.95)),
                    shifts=work,
                    breaks=rest,
                )
            )
    if preset.dark_share:
        chosen = rng.choice(len(agents), size=round(len(agents) * preset.dark_share), replace=False)
        for index in sorted(chosen):
            agent = agents[index]
            lo, hi = preset.dark_hours
            at = rng.uniform(lo, hi) * 3600
            length = rng.uniform(*preset.dark_minutes) * 60
            agents[index] = replace(agent, dark=((at, at + length),))
    return agents


def _arrivals(rng: np.random.Generator, weights: tuple[float, ...], count: int) -> np.ndarray:
    """`count` arrival times over the day from hourly weights: a Poisson process conditioned on
    its count (each time drawn by the hourly profile, uniform within the hour), sorted."""
    w = np.asarray(weights, dtype=float)
    hours = rng.choice(24, size=count, p=w / w.sum())
    return np.sort(hours * 3600 + rng.uniform(0, 3600, size=count))


def _orders(preset: Preset, rng: np.random.Generator, start: datetime, scale: float) -> list[SimOrder]:
    desk_n = round(preset.desk_orders * scale)
    site_n = round(preset.on_site_orders * scale)
    desk_times = _arrivals(rng, preset.desk_weights, desk_n)
    lo, hi = preset.on_site_hours
    site_times = np.sort(rng.uniform(lo * 3600, hi * 3600, size=site_n))
    desk_codes = list(DESK_CATEGORIES)
    desk_p = np.asarray([DESK_CATEGORIES[c][1] for c in desk_codes])
    site_codes = list(ON_SITE_CATEGORIES)
    site_p = np.asarray([ON_SITE_CATEGORIES[c][1] for c in site_codes])
    district_p = np.asarray(DISTRICT_WEIGHTS, dtype=float) / sum(DISTRICT_WEIGHTS)
    channel_ids = [c for c, _ in CHANNELS]
    channel_p = np.asarray([p for _, p in CHANNELS])
    customers = max(50, int((desk_n + site_n) * 0.85))  # some customers order twice in a day

    plan: list[tuple[float, str, bool]] = [
        (float(t), str(rng.choice(desk_codes, p=desk_p)), False) for t in desk_times
    ]
    plan += [(float(t), str(rng.choice(site_codes, p=site_p)), True) for t in site_times]
    plan.sort()
    made = []
    for index, (at, category, on_site) in enumerate(plan, start=1):
        skill = ON_SITE_CATEGORIES[category][0] if on_site else DESK_CATEGORIES[category][0]
        mean = ON_SITE_CATEGORIES[category][2] if on_site else preset.desk_work_minutes
        _code, _name, lat, lng, region = DISTRICTS[int(rng.choice(len(DISTRICTS), p=district_p))]
        vip = bool(rng.random() < preset.vip_share)
        customer = (
            int(rng.choice(VIP_CUSTOMERS)) if vip else int(rng.integers(len(VIP_CUSTOMERS) + 1, customers))
        )
        expedited = bool(rng.random() < preset.expedited_share)
        ready = start + timedelta(seconds=at)
        due = due_at_for(
            stage="pending_review",
            entered_at=ready,
            expedited=expedited,
            category=category,
            policies=SLA_BOOK,
        )
        patience = None
        if preset.patience_median_minutes is not None:
            patience = float(preset.patience_median_minutes * math.exp(0.5 * rng.standard_normal()))
        made.append(
            SimOrder(
                id=index,
                ready_seconds=at,
                due_seconds=(due - start).total_seconds(),
                work_minutes=float(rng.gamma(2.0, mean / 2.0)),  # mean `mean`, less spread than exponential
                channel_id=int(rng.choice(channel_ids, p=channel_p)),
                region_id=region,
                category=category,
                skills=frozenset({skill}),
                lat=lat + rng.uniform(-0.03, 0.03),
                lng=lng + rng.uniform(-0.03, 0.03),
                on_site=on_site,
                expedited=expedited,
                vip=vip,
                customer_id=customer,
                patience_minutes=None if on_site else patience,
                label=f"SIM-{index:05d}",
            )
        )
    return made
