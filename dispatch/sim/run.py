"""Replaying a scenario in virtual time through the real dispatch engine.

A discrete-event loop: orders become ready, agents answer offers, work, travel, start and end
shifts, take breaks or go dark; after every instant at which something changed that could
change a decision, one matching round runs — `dispatch.engine.rounds.plan_round`, the very
function the Celery tick calls, over snapshots built the way `dispatch.selectors` builds them.
Offer windows, the L2 rules and the policy each order follows come from the same engine module.
What the live system leaves to people (answering offers, working, the supervisor's manual queue)
follows the behaviour models of `dispatch.sim.model`, drawn from one seeded generator, so a
run is reproducible and two policies can be compared on the same day.

Equivalences the loop relies on, to stay fast without changing any decision:
- A round only runs after an event that can change one (an order or a returned item in the
  pool, a slot freeing, an agent coming online), as the live system enqueues a round on exactly
  those events; the periodic sweep would find nothing else to do.
- When no online agent has a free slot, no offer can be made: the round only asks the engine
  why the items with no known reason yet wait (an escalation may follow from it), and re-asks
  for the others when the roster changed or an item's L2 wait ran out.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dispatch.engine.geo import haversine_km
from dispatch.engine.rounds import (
    ROUND_PAGES,
    TICK_LIMIT,
    RoundGroup,
    ScopedPolicy,
    has_free_slot,
    needs_supervisor,
    offer_windows,
    plan_round,
    rounds_exhausted,
)
from dispatch.engine.types import AgentSnap, AgentStatus, Offer, TaskSnap, Waiting, WaitReason
from dispatch.sim.model import PolicySet, Progress, Scenario, SimAgent, SimOrder

# How long after the last order work may still run: a day of drain is plenty for any queue a
# day can build; what is still unfinished then counts as unserved (and breached).
DRAIN_SECONDS = 86400.0
CLOCK_RESOLUTION = 1e-3  # seconds; times closer than this are the same instant

# Event kinds, in the order they are handled when they fall on the same instant: agents come
# online before orders arrive, so a shift starting at 09:00 takes the 09:00 order.
(
    _SHIFT_START,
    _BREAK_END,
    _DARK_END,
    _FINISH,
    _RESPOND,
    _EXPIRE,
    _ARRIVE,
    _RECHECK,
    _SUPERVISOR,
    _ABANDON,
    _BREAK_START,
    _DARK_START,
    _SHIFT_END,
) = range(13)


class _Task:
    __slots__ = (
        "abandoned_at",
        "accepted_at",
        "agent",
        "distance_km",
        "escalated",
        "excluded",
        "finished_at",
        "fixed",
        "manual",
        "offer",
        "order",
        "policy",
        "reason",
        "recheck_at",
        "rounds",
        "skill_match",
        "state",
        "travel_km",
        "waiting_since",
    )

    def __init__(self, order: SimOrder, policy: ScopedPolicy) -> None:
        self.order = order
        self.policy = policy
        self.state = "waiting"  # waiting | offered | escalated | assigned | finished | abandoned
        self.waiting_since = order.ready_seconds
        self.rounds = 0
        self.excluded: set[int] = set()
        self.reason: WaitReason | None = None  # why it waited in the last round that asked
        self.recheck_at: float | None = None
        self.offer: _Offer | None = None
        self.agent: _Agent | None = None
        self.accepted_at: float | None = None
        self.abandoned_at: float | None = None
        self.finished_at: float | None = None
        self.escalated = False
        self.manual = False
        self.distance_km: float | None = None
        self.skill_match: bool | None = None
        self.travel_km: float | None = None
        self.fixed: bool | None = None


class _Offer:
    __slots__ = ("agent", "expires_at", "open", "task")

    def __init__(self, task: _Task, agent: _Agent, expires_at: float) -> None:
        self.task, self.agent, self.expires_at, self.open = task, agent, expires_at, True


class _Agent:
    __slots__ = (
        "busy_seconds",
        "consecutive_exceptions",
        "dark",
        "in_shift",
        "items",
        "last_offer_at",
        "lat",
        "live",
        "lng",
        "offers",
        "on_break",
        "queue",
        "shift_seconds",
        "snap_base",
        "spec",
        "working",
    )

    def __init__(self, spec: SimAgent) -> None:
        self.spec = spec
        self.in_shift = False
        self.on_break = False
        self.dark = False
        self.live = 0  # offered + accepted and not yet finished: what capacity counts
        self.queue: deque[_Task] = deque()  # accepted, not started
        self.working: _Task | None = None
        self.lat, self.lng = spec.lat, spec.lng
        self.last_offer_at = 0.0
        self.offers = 0
        self.busy_seconds = 0.0
        self.items = 0
        self.consecutive_exceptions = 0
        self.shift_seconds = sum(max(0.0, end - start) for start, end in spec.shifts)

    @property
    def online(self) -> bool:
        """What the system sees: in a shift and not on a break (a dark agent still looks online)."""
        return self.in_shift and not self.on_break


@dataclass
class Counters:
    offers: int = 0
    rejects: int = 0
    expiries: int = 0
    released: int = 0
    escalated: int = 0
    manual: int = 0
    rounds: int = 0
    full_rounds: int = 0
    repeat_orders: int = 0
    events: int = 0


@dataclass
class RunOutcome:
    """Everything a run produced, for `dispatch.sim.metrics.summarise`."""

    scenario: Scenario
    policy: PolicySet
    tasks: list[_Task]
    agents: list[_Agent]
    counters: Counters
    wall_seconds: float
    end_seconds: float
    extra: dict = field(default_factory=dict)


class Simulation:
    def __init__(self, scenario: Scenario, policy: PolicySet, *, seed: int = 1, tick_limit: int = TICK_LIMIT):
        self.scenario = scenario
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.tick_limit = tick_limit
        self.epoch = scenario.start.timestamp()
        self.end_seconds = scenario.horizon_seconds + DRAIN_SECONDS
        self.agents = [_Agent(a) for a in scenario.agents]
        self.agent_by_id = {a.spec.id: a for a in self.agents}
        self.dedicated: dict[int, set[int]] = defaultdict(set)  # customer -> their agents
        for a in scenario.agents:
            for customer in a.dedicated_customers:
                self.dedicated[customer].add(a.id)
        self.last_agent: dict[int, int] = {}  # customer -> who served them last
        self.tasks: list[_Task] = []
        self.pool: dict[int, _Task] = {}  # waiting tasks by order id, in arrival order
        self._offered: set[_Task] = set()  # tasks with an open offer
        self.counters = Counters()
        self.events: list[tuple] = []
        self._seq = 0
        self.now = 0.0
        self.dirty = False  # something happened that could let a round make an offer
        self.roster_changed = True  # who is online changed: every waiting reason may have too
        self._next_order_id = max((o.id for o in scenario.orders), default=0) + 1

    # --- Events ----------------------------------------------------------------------------
    def _push(self, at: float, kind: int, subject: object = None) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, kind, self._seq, subject))

    def run(self, progress: Progress | None = None) -> RunOutcome:
        started = time.perf_counter()
        for agent in self.agents:
            spec = agent.spec
            for start, end in spec.shifts:
                self._push(start, _SHIFT_START, agent)
                self._push(end, _SHIFT_END, agent)
            for start, end in spec.breaks:
                self._push(start, _BREAK_START, agent)
                self._push(end, _BREAK_END, agent)
            for start, end in spec.dark:
                self._push(start, _DARK_START, agent)
                self._push(end, _DARK_END, agent)
        for order in self.scenario.orders:
            self._push(order.ready_seconds, _ARRIVE, order)
        handlers: dict[int, Callable] = {
            _SHIFT_START: self._shift_start,
            _SHIFT_END: self._shift_end,
            _BREAK_START: self._break_start,
            _BREAK_END: self._break_end,
            _DARK_START: self._dark_start,
            _DARK_END: self._dark_end,
            _ARRIVE: self._arrive,
            _RESPOND: self._respond,
            _EXPIRE: self._expire,
            _FINISH: self._finish,
            _SUPERVISOR: self._supervisor,
            _ABANDON: self._abandon,
            _RECHECK: self._recheck,
        }
        horizon = self.scenario.horizon_seconds or 1.0
        next_report = 0.0
        events = self.events
        while events:
            at = events[0][0]
            if at > self.end_seconds:
                break
            if at > self.now and self.dirty:
                self._round()
                continue
            _at, kind, _seq, subject = heapq.heappop(events)
            self.now = at
            self.counters.events += 1
            handlers[kind](subject)
            if progress is not None and at >= next_report:
                progress(min(1.0, at / horizon))
                next_report = at + horizon / 200
        if self.dirty and self.now <= self.end_seconds:
            self._round()
        if progress is not None:
            progress(1.0)
        return RunOutcome(
            scenario=self.scenario,
            policy=self.policy,
            tasks=self.tasks,
            agents=self.agents,
            counters=self.counters,
            wall_seconds=time.perf_counter() - started,
            end_seconds=self.end_seconds,
        )

    # --- The roster ------------------------------------------------------------------------
    def _shift_start(self, agent: _Agent) -> None:
        agent.in_shift = True
        self._online_changed(agent)

    def _shift_end(self, agent: _Agent) -> None:
        # Offers go back at once; accepted work is finished before they leave.
        agent.in_shift = False
        self._release_offers(agent)
        self._online_changed(agent)

    def _break_start(self, agent: _Agent) -> None:
        agent.on_break = True
        self._release_offers(agent)
        self._online_changed(agent)

    def _break_end(self, agent: _Agent) -> None:
        agent.on_break = False
        self._online_changed(agent)
        self._start_next(agent)

    def _dark_start(self, agent: _Agent) -> None:
        agent.dark = True  # nothing changes for the system: that is the point

    def _dark_end(self, agent: _Agent) -> None:
        agent.dark = False
        self._start_next(agent)

    def _online_changed(self, agent: _Agent) -> None:
        self.roster_changed = True
        if agent.online:
            self.dirty = True

    def _release_offers(self, agent: _Agent) -> None:
        """An agent going offline hands their open offers back (not a failed round)."""
        for task in list(self.tasks_offered_to(agent)):
            offer = task.offer
            offer.open = False
            task.offer = None
            agent.live -= 1
            self.counters.released += 1
            self._back_to_pool(task, failed=False)

    def tasks_offered_to(self, agent: _Agent):
        return (t for t in self._offered if t.offer is not None and t.offer.agent is agent)

    # --- Orders ----------------------------------------------------------------------------
    def _arrive(self, order: SimOrder) -> None:
        task = _Task(order, self.policy.for_order(order))
        self.tasks.append(task)
        self.pool[order.id] = task
        if order.patience_minutes is not None:
            self._push(order.ready_seconds + order.patience_minutes * 60, _ABANDON, task)
        self.dirty = True

    def _abandon(self, task: _Task) -> None:
        """The customer gives up: nobody accepted the order in time."""
        if task.state not in ("waiting", "offered", "escalated"):
            return
        if task.offer is not None:
            task.offer.open = False
            task.offer.agent.live -= 1
            task.offer = None
            self.dirty = True
        self._offered.discard(task)
        self.pool.pop(task.order.id, None)
        task.state = "abandoned"
        task.abandoned_at = self.now

    def _back_to_pool(self, task: _Task, *, failed: bool) -> None:
        self._offered.discard(task)
        if failed:
            task.rounds += 1
        task.waiting_since = self.now
        task.reason = None
        if failed and rounds_exhausted(task.rounds, max_rounds=task.policy.max_rounds):
            self._escalate(task)
            return
        task.state = "waiting"
        self.pool[task.order.id] = task
        self.dirty = True

    def _escalate(self, task: _Task) -> None:
        """L2: the item leaves automatic matching for the supervisor's manual queue."""
        task.state = "escalated"
        task.escalated = True
        self.pool.pop(task.order.id, None)
        self.counters.escalated += 1
        self._push(self.now + self.scenario.supervisor.reaction_minutes * 60, _SUPERVISOR, task)

    def _supervisor(self, task: _Task) -> None:
        if task.state != "escalated":
            return
        agent = self._pick_by_hand(task)
        if agent is None:
            self._push(self.now + self.scenario.supervisor.retry_minutes * 60, _SUPERVISOR, task)
            return
        self.counters.manual += 1
        task.manual = True
        agent.live += 1
        self._accepted(task, agent, distance=self._distance(task.order, agent))

    def _pick_by_hand(self, task: _Task) -> _Agent | None:
        """Who a supervisor would pick: online, holding the skills, with room, near, least loaded."""
        needs = task.order.skills
        online = [a for a in self.agents if a.online]
        if not online:
            return None

        def rank(a: _Agent) -> tuple:
            skilled = needs <= set(a.spec.skills)
            distance = self._distance(task.order, a)
            return (
                not skilled,
                a.live / a.spec.capacity,
                distance if distance is not None else 0.0,
                a.spec.id,
            )

        with_room = [a for a in online if a.live < a.spec.capacity]
        if with_room:
            return min(with_room, key=rank)
        if self.scenario.supervisor.force_when_full:
            return min(online, key=rank)
        return None

    # --- Offers and answers ----------------------------------------------------------------
    def _respond(self, offer: _Offer) -> None:
        if not offer.open:
            return
        task, agent = offer.task, offer.agent
        if agent.dark or not agent.online:
            return  # no answer: the expiry event takes it back
        behaviour = agent.spec.behaviour
        chance = behaviour.acceptance if task.skill_match else behaviour.acceptance_unskilled
        offer.open = False
        task.offer = None
        self._offered.discard(task)
        if self.rng.random() < chance:
            agent.consecutive_exceptions = 0
            self._accepted(task, agent, distance=task.distance_km)
        else:
            self.counters.rejects += 1
            self._failed_round(task, agent)

    def _expire(self, offer: _Offer) -> None:
        if not offer.open:
            return
        task, agent = offer.task, offer.agent
        offer.open = False
        task.offer = None
        self.counters.expiries += 1
        self._failed_round(task, agent)

    def _failed_round(self, task: _Task, agent: _Agent) -> None:
        """A reject or an expiry: the slot frees, the agent is never offered this task again,
        and the task goes back to the pool (or to the supervisor when its rounds ran out)."""
        agent.live -= 1
        agent.consecutive_exceptions += 1
        task.excluded.add(agent.spec.id)
        self._back_to_pool(task, failed=True)

    def _accepted(self, task: _Task, agent: _Agent, *, distance: float | None) -> None:
        task.state = "assigned"
        task.agent = agent
        task.accepted_at = self.now
        task.distance_km = distance
        task.skill_match = task.order.skills <= set(agent.spec.skills)
        if task.order.customer_id is not None:
            self.last_agent[task.order.customer_id] = agent.spec.id
        agent.queue.append(task)
        self._start_next(agent)

    # --- Work ------------------------------------------------------------------------------
    def _start_next(self, agent: _Agent) -> None:
        if agent.working is not None or not agent.queue or agent.dark or agent.on_break:
            return
        task = agent.queue.popleft()
        agent.working = task
        order, behaviour = task.order, agent.spec.behaviour
        seconds = 0.0
        if order.on_site and order.lat is not None and agent.lat is not None:
            task.travel_km = haversine_km(agent.lat, agent.lng, order.lat, order.lng) * behaviour.road_factor
            seconds += task.travel_km / behaviour.speed_kmh * 3600
            agent.lat, agent.lng = order.lat, order.lng
        level = _level(order.skills, agent.spec.skills)
        factor = (
            1.0
            if level is None
            else (behaviour.unskilled_factor if level == 0 else behaviour.level_factors[level - 1])
        )
        seconds += order.work_minutes * 60 * factor
        if order.on_site:
            chance = behaviour.fix_unskilled if level == 0 else behaviour.fix_levels[(level or 3) - 1]
            task.fixed = bool(self.rng.random() < chance)
        agent.busy_seconds += seconds
        self._push(self.now + seconds, _FINISH, agent)

    def _finish(self, agent: _Agent) -> None:
        task = agent.working
        agent.working = None
        agent.live -= 1
        agent.items += 1
        task.state = "finished"
        task.finished_at = self.now
        self.dirty = True  # a slot freed
        order = task.order
        if task.fixed is False:
            revisit = self.now + agent.spec.behaviour.revisit_after_minutes * 60
            if revisit < self.scenario.horizon_seconds:
                self._repeat_order(order, at=revisit)
        self._start_next(agent)

    def _repeat_order(self, order: SimOrder, *, at: float) -> None:
        """The customer calls again: a repeat repair, urgent, with the same allowance."""
        self.counters.repeat_orders += 1
        repeat = SimOrder(
            id=self._next_order_id,
            ready_seconds=at,
            due_seconds=at + (order.due_seconds - order.ready_seconds),
            work_minutes=order.work_minutes,
            channel_id=order.channel_id,
            region_id=order.region_id,
            category=order.category,
            skills=order.skills,
            lat=order.lat,
            lng=order.lng,
            on_site=order.on_site,
            expedited=order.expedited,
            repeat_repair=True,
            vip=order.vip,
            customer_id=order.customer_id,
            patience_minutes=order.patience_minutes,
            label=f"{order.label}↻" if order.label else "",
        )
        self._next_order_id += 1
        self._push(at, _ARRIVE, repeat)

    # --- The round -------------------------------------------------------------------------
    def _recheck(self, task: _Task) -> None:
        if task.state == "waiting" and task.recheck_at is not None and task.recheck_at <= self.now:
            task.recheck_at = None
            task.reason = None  # ask again: its L2 wait has run out
            self.dirty = True

    def _round(self) -> None:
        self.dirty = False
        if not self.pool:
            self.roster_changed = False
            return
        self.counters.rounds += 1
        free = any(a.online and a.live < a.spec.capacity for a in self.agents)
        ordered = sorted(
            self.pool.values(),
            key=lambda t: (
                not (t.order.expedited or t.order.repeat_repair),
                t.order.ready_seconds,
                t.order.id,
            ),
        )
        claimed = ordered[: self.tick_limit]
        if not free and not self.roster_changed:
            claimed = [t for t in claimed if t.reason is None]  # nobody can be offered anything
            if not claimed:
                return
        else:
            self.counters.full_rounds += 1
        self.roster_changed = False
        # Pages as the live round takes them (dispatch.services._match_round): the next one
        # while a page came back whole and someone still has a free slot.
        for page in range(ROUND_PAGES):
            if page:
                claimed = ordered[page * self.tick_limit : (page + 1) * self.tick_limit]
                if not claimed:
                    return
            snaps, offers = self._round_page(claimed)
            if len(claimed) < self.tick_limit or not has_free_slot(snaps, offers):
                return

    def _round_page(self, claimed: list[_Task]) -> tuple[list[AgentSnap], list[Offer]]:
        now_epoch = self.epoch + self.now
        snaps = [self._agent_snap(a) for a in self.agents]
        groups: dict[int, RoundGroup] = {}
        for task in claimed:
            groups.setdefault(id(task.policy), RoundGroup(task.policy.spec)).tasks.append(
                self._task_snap(task)
            )
        planned = plan_round(list(groups.values()), snaps, now=now_epoch)
        by_id = {t.order.id: t for t in claimed}
        priority = {t.order.id: i for i, t in enumerate(claimed)}
        offers = sorted(planned.offers, key=lambda o: priority[o.task_id])
        windows = offer_windows(offers, {o.task_id: by_id[o.task_id].policy.spec for o in offers})
        for offer, window in zip(offers, windows, strict=True):
            self._make_offer(by_id[offer.task_id], offer, window)
        for item in planned.waiting:
            self._waits(by_id[item.task_id], item)
        return snaps, offers

    def _make_offer(self, task: _Task, offer: Offer, window: int) -> None:
        agent = self.agent_by_id[offer.agent_id]
        self.pool.pop(task.order.id, None)
        task.state = "offered"
        task.reason = None
        task.distance_km = offer.distance_km
        task.skill_match = offer.skill_match
        expires = self.now + window
        record = _Offer(task, agent, expires)
        task.offer = record
        self._offered.add(task)
        agent.live += 1
        agent.offers += 1
        agent.last_offer_at = self.epoch + self.now
        self.counters.offers += 1
        self._push(expires, _EXPIRE, record)
        if agent.dark:
            return
        behaviour = agent.spec.behaviour
        delay = behaviour.response_median_seconds * math.exp(
            behaviour.response_sigma * self.rng.standard_normal()
        )
        if delay < window:
            self._push(self.now + delay, _RESPOND, record)

    def _waits(self, task: _Task, item: Waiting) -> None:
        task.reason = item.reason
        # The virtual clock is a float: a wait that ends exactly now must not read 299.9999 s.
        waited = self.now - task.waiting_since + CLOCK_RESOLUTION
        if needs_supervisor(item, waited_seconds=waited, l2_wait_seconds=task.policy.l2_wait_seconds):
            self._escalate(task)
        elif item.reason == WaitReason.NONE_ONLINE and task.recheck_at is None:
            task.recheck_at = max(
                task.waiting_since + task.policy.l2_wait_seconds, self.now + CLOCK_RESOLUTION
            )
            self._push(task.recheck_at, _RECHECK, task)

    def _agent_snap(self, agent: _Agent) -> AgentSnap:
        spec = agent.spec
        return AgentSnap(
            id=spec.id,
            status=AgentStatus.ONLINE if agent.online else AgentStatus.OFFLINE,
            capacity=spec.capacity,
            active=agent.live,
            skills=spec.skills,
            regions=spec.regions,
            lat=agent.lat,
            lng=agent.lng,
            radius_km=spec.radius_km,
            dedicated_channels=spec.dedicated_channels,
            good_rate_7d=spec.good_rate_7d,
            quality_weight=spec.quality_weight,
            last_offer_at=agent.last_offer_at,
            offers_today=agent.offers,
        )

    def _task_snap(self, task: _Task) -> TaskSnap:
        order = task.order
        return TaskSnap(
            id=order.id,
            channel_id=order.channel_id,
            region_id=order.region_id,
            lat=order.lat,
            lng=order.lng,
            skills=order.skills,
            expedited=order.expedited,
            repeat_repair=order.repeat_repair,
            vip=order.vip,
            dedicated_agents=frozenset(self.dedicated.get(order.customer_id, ()))
            if order.vip
            else frozenset(),
            last_agent_id=self.last_agent.get(order.customer_id) if order.customer_id is not None else None,
            excluded=frozenset(task.excluded),
            waiting_seconds=max(0.0, self.now - order.ready_seconds),
            rounds=task.rounds,
        )

    def _distance(self, order: SimOrder, agent: _Agent) -> float | None:
        if order.lat is None or agent.lat is None:
            return None
        return haversine_km(agent.lat, agent.lng, order.lat, order.lng)


def _level(needs: frozenset[str], skills) -> int | None:
    """The agent's lowest level in the skills the order needs; 0 if they lack one; None if it needs none."""
    if not needs:
        return None
    return min(int(skills.get(code, 0)) for code in needs)


def simulate(
    scenario: Scenario, policy: PolicySet, *, seed: int = 1, progress: Progress | None = None
) -> RunOutcome:
    return Simulation(scenario, policy, seed=seed).run(progress)


def compare(
    scenario: Scenario, policy_sets: Sequence[PolicySet], *, seed: int = 1, progress: Progress | None = None
) -> dict:
    """Each policy set over the same scenario with the same seed, summarised side by side."""
    from dispatch.sim.metrics import scenario_summary, summarise

    if not policy_sets:
        raise ValueError("name at least one policy to simulate")
    names = [p.name for p in policy_sets]
    if len(set(names)) != len(names):
        raise ValueError(f"two policy sets share a name: {names}")
    runs = []
    for index, policy in enumerate(policy_sets):
        share = 1 / len(policy_sets)

        def step(done: float, index: int = index, share: float = share) -> None:
            if progress is not None:
                progress(min(1.0, (index + done) * share))

        runs.append(summarise(simulate(scenario, policy, seed=seed, progress=step)))
    return {"scenario": scenario_summary(scenario), "seed": seed, "runs": runs}
