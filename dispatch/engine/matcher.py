"""Matching a waiting pool to the roster in one round: filters, the optimal assignment (smart),
round robin and fixed shares, and the reason every unmatched task waits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from dispatch.engine import scoring
from dispatch.engine.geo import distance_matrix_km
from dispatch.engine.types import (
    AgentSnap,
    AgentStatus,
    Criterion,
    HardFilter,
    MatchResult,
    Offer,
    PolicyKind,
    PolicySpec,
    TaskSnap,
    Waiting,
    WaitReason,
)

# Among agents who score the same, the one idle longest since their last offer gets the task.
# At most 1e-6 per offer, it only decides between assignments no one could tell apart by score.
IDLE_TIEBREAK = 1e-6
IDLE_CAP_SECONDS = 86400.0


@dataclass(slots=True)
class _Board:
    """The pool and the roster as arrays (tasks on rows, agents on columns), with the filters."""

    tasks: Sequence[TaskSnap]
    agents: Sequence[AgentSnap]
    agent_ids: np.ndarray
    online: np.ndarray  # (A,)
    free: np.ndarray  # (A,) free capacity
    active: np.ndarray
    capacity: np.ndarray
    skill_codes: list[str]
    needs: np.ndarray  # (T, k) indices into skill_codes of each task's skills, -1 padded
    levels: np.ndarray  # (A, S) agent level per skill, 0 when not held
    has_skills: np.ndarray  # (T, A) agent holds every skill the task calls for
    has_any_skill: np.ndarray  # (T, A) agent holds at least one of them (or none are needed)
    distance: np.ndarray  # (T, A) km, NaN without coordinates
    area_ok: np.ndarray  # (T, A)
    member: np.ndarray  # (T, A) agent dedicated to the task's channel
    has_team: np.ndarray  # (T,) some roster agent is dedicated to the task's channel
    excluded: np.ndarray  # (T, A)
    urgency: np.ndarray  # (T,)
    order: np.ndarray  # task indices, most urgent first

    @classmethod
    def build(cls, tasks: Sequence[TaskSnap], agents: Sequence[AgentSnap]) -> _Board:
        n_tasks, n_agents = len(tasks), len(agents)
        agent_ids = np.fromiter((a.id for a in agents), dtype=np.int64, count=n_agents)
        column = {a.id: j for j, a in enumerate(agents)}
        capacity = np.fromiter((a.capacity for a in agents), dtype=np.int64, count=n_agents)
        active = np.fromiter((a.active for a in agents), dtype=np.int64, count=n_agents)
        online = np.fromiter((a.status == AgentStatus.ONLINE for a in agents), dtype=bool, count=n_agents)

        # Only skills some task calls for matter; agents' other skills never change a decision.
        skill_codes = sorted({code for t in tasks for code in t.skills})
        skill_col = {code: s for s, code in enumerate(skill_codes)}
        needs = np.full((n_tasks, max((len(t.skills) for t in tasks), default=0)), -1, dtype=np.int64)
        for i, t in enumerate(tasks):
            for k, code in enumerate(sorted(t.skills)):
                needs[i, k] = skill_col[code]
        levels = np.zeros((n_agents, len(skill_codes)))
        for j, a in enumerate(agents):
            for code, level in a.skills.items():
                s = skill_col.get(code)
                if s is not None and level > 0:
                    levels[j, s] = level
        held = scoring.pair_levels(levels, needs, np.arange(n_agents)[None, :], np.arange(n_tasks)[:, None])
        has_skills = scoring.skill_coverage(held)
        # A message that calls for two skills (退货 and 快递) goes to someone who has at least one;
        # the skill score then prefers whoever has both.
        needs_none = (needs < 0).all(axis=1)
        has_any_skill = (held > 0).any(axis=-1) | needs_none[:, None]

        t_lat = [t.lat for t in tasks]
        t_lng = [t.lng for t in tasks]
        a_lat = [a.lat for a in agents]
        a_lng = [a.lng for a in agents]
        if any(v is not None for v in t_lat) and any(v is not None for v in a_lat):
            distance = distance_matrix_km(t_lat, t_lng, a_lat, a_lng)
        else:
            distance = np.full((n_tasks, n_agents), np.nan)

        area_ok = cls._area(tasks, agents, distance)
        member = cls._membership(
            [t.channel_id for t in tasks], [a.dedicated_channels for a in agents], n_agents
        )
        excluded = np.zeros((n_tasks, n_agents), dtype=bool)
        for i, t in enumerate(tasks):
            for agent_id in t.excluded:
                j = column.get(agent_id)
                if j is not None:
                    excluded[i, j] = True

        urgency = scoring.urgency_scores(
            np.fromiter((t.expedited for t in tasks), dtype=float, count=n_tasks),
            np.fromiter((t.repeat_repair for t in tasks), dtype=float, count=n_tasks),
            np.fromiter((t.waiting_seconds for t in tasks), dtype=float, count=n_tasks),
            np.fromiter((t.rounds for t in tasks), dtype=float, count=n_tasks),
        )
        waited = np.fromiter((t.waiting_seconds for t in tasks), dtype=float, count=n_tasks)
        task_ids = np.fromiter((t.id for t in tasks), dtype=np.int64, count=n_tasks)
        order = np.lexsort((task_ids, -waited, -urgency))
        return cls(
            tasks=tasks,
            agents=agents,
            agent_ids=agent_ids,
            online=online,
            free=np.maximum(capacity - active, 0),
            active=active,
            capacity=capacity,
            skill_codes=skill_codes,
            needs=needs,
            levels=levels,
            has_skills=has_skills,
            has_any_skill=has_any_skill,
            distance=distance,
            area_ok=area_ok,
            member=member,
            has_team=member.any(axis=1),
            excluded=excluded,
            urgency=urgency,
            order=order,
        )

    @staticmethod
    def _area(tasks: Sequence[TaskSnap], agents: Sequence[AgentSnap], distance: np.ndarray) -> np.ndarray:
        """An agent covers a task when they cover every region (no regions set), the task's region,
        or the task lies within their radius (cross-region service near a border). A task with
        neither a region nor coordinates cannot be placed, so it does not rule anyone out."""
        everywhere = np.fromiter((not a.regions for a in agents), dtype=bool, count=len(agents))
        in_region = _Board._membership([t.region_id for t in tasks], [a.regions for a in agents], len(agents))
        radius = np.fromiter((a.radius_km for a in agents), dtype=float, count=len(agents))
        with np.errstate(invalid="ignore"):
            in_radius = distance <= radius[None, :]  # NaN (no coordinates) compares False
        unplaced = np.fromiter(
            (t.region_id is None and (t.lat is None or t.lng is None) for t in tasks),
            dtype=bool,
            count=len(tasks),
        )
        return everywhere[None, :] | in_region | in_radius | unplaced[:, None]

    @staticmethod
    def _membership(keys: Sequence[int | None], sets: Sequence[frozenset[int]], n_agents: int) -> np.ndarray:
        """(T, A): task key (region, channel) is in the agent's set."""
        vocabulary = sorted({k for s in sets for k in s})
        index = {k: r for r, k in enumerate(vocabulary)}
        table = np.zeros((len(vocabulary) + 1, n_agents), dtype=bool)  # last row: a key no agent has
        for j, s in enumerate(sets):
            for k in s:
                table[index[k], j] = True
        rows = np.fromiter((index.get(k, len(vocabulary)) for k in keys), dtype=np.int64, count=len(keys))
        return table[rows]


def match(
    tasks: Sequence[TaskSnap], agents: Sequence[AgentSnap], policy: PolicySpec, *, now: float
) -> MatchResult:
    """Offers for the waiting pool under `policy`, at most one per task and never more per agent
    than their free capacity, and for every other task the most precise reason it waits.

    Offers come in priority order (urgency, then longest waiting, then id), so an offer's index is
    its `position` for `windows.offer_window_seconds`. `now` (epoch seconds) breaks ties in favour
    of the agent idle longest since their last offer.
    """
    _refuse_duplicates(tasks, agents)
    result = MatchResult()
    if not tasks:
        return result
    board = _Board.build(tasks, agents)

    shares = np.fromiter((policy.shares.get(a.id, 0.0) for a in agents), dtype=float, count=len(agents))
    policy_ok = np.ones((len(tasks), len(agents)), dtype=bool)
    if HardFilter.AREA in policy.filters:
        policy_ok &= board.area_ok
    if HardFilter.SKILL in policy.filters:
        # Every skill the task calls for, when someone on the roster (in the area, not excluded,
        # busy or not) holds them all: the task waits for them. A mixed order nobody covers
        # whole goes to someone holding at least one rather than to the supervisor.
        whole = board.has_skills & policy_ok & ~board.excluded
        policy_ok &= np.where(whole.any(axis=1)[:, None], board.has_skills, board.has_any_skill)
    if HardFilter.CHANNEL_TEAM in policy.filters:
        policy_ok &= ~board.has_team[:, None] | board.member
    if policy.kind == PolicyKind.WEIGHTED:
        policy_ok &= (shares > 0)[None, :]
    qualified = policy_ok & ~board.excluded
    feasible = qualified & (board.online & (board.free > 0))[None, :]

    if policy.kind == PolicyKind.SMART:
        pairs = _smart(board, feasible, policy, now=now)
    elif policy.kind == PolicyKind.ROUND_ROBIN:
        pairs = _round_robin(board, feasible)
    elif policy.kind == PolicyKind.WEIGHTED:
        pairs = _weighted(board, feasible, shares)
    else:
        raise ValueError(f"unknown policy kind {policy.kind!r}")

    offered = {}
    for i, j, score, breakdown in pairs:
        distance = board.distance[i, j]
        offered[i] = Offer(
            task_id=tasks[i].id,
            agent_id=agents[j].id,
            score=score,
            breakdown=breakdown,
            distance_km=None if np.isnan(distance) else float(distance),
            skill_match=bool(board.has_skills[i, j]),
        )
    reasons = _Reasons(board, policy, policy_ok, qualified, feasible, shares)
    for i in board.order.tolist():
        if i in offered:
            result.offers.append(offered[i])
        else:
            result.waiting.append(reasons.why(i))
    return result


def _refuse_duplicates(tasks: Sequence[TaskSnap], agents: Sequence[AgentSnap]) -> None:
    if len({t.id for t in tasks}) != len(tasks):
        raise ValueError("the pool lists a task twice")
    if len({a.id for a in agents}) != len(agents):
        raise ValueError("the roster lists an agent twice")


Pair = tuple[int, int, float, dict[str, float]]  # task row, agent column, score, breakdown


def _smart(board: _Board, feasible: np.ndarray, policy: PolicySpec, *, now: float) -> list[Pair]:
    """One optimal assignment of tasks to agents' capacity slots, maximising the total score.

    Scores are computed for the feasible (task, agent) pairs only, not the whole board: with skill
    and area filters on, that is about a tenth of it. Each agent gets min(free capacity, number of
    tasks they could take) slots, since they can never use more, so the reduction is exact. Slots
    of one agent differ only in their load score, which falls from slot to slot, so the optimum
    fills each agent's first slots.
    """
    pair_task, pair_agent = np.nonzero(feasible)  # row-major: by task, then agent
    if pair_task.size == 0:
        return []
    n_slots = np.minimum(board.free, np.bincount(pair_agent, minlength=len(board.agents)))
    first_slot = np.cumsum(n_slots) - n_slots
    slot_agent = np.repeat(np.arange(len(board.agents)), n_slots)
    slot_k = np.arange(slot_agent.size) - first_slot[slot_agent]

    criteria = scoring.policy_criteria(policy)
    total_weight = sum(w for _, w in criteria) or 1.0
    # Per criterion, a score per pair; load alone is per slot, since it depends on the slot.
    parts = {
        c: _criterion(c, board, pair_task, pair_agent, feasible, slot_agent, slot_k) for c, _ in criteria
    }
    pair_value = np.zeros(pair_task.size)
    slot_value = np.zeros(slot_agent.size)
    for criterion, weight in criteria:
        if criterion == Criterion.LOAD:
            slot_value += parts[criterion] * (weight / total_weight)
        else:
            pair_value += parts[criterion] * (weight / total_weight)
    idle = np.fromiter(
        (min(max(now - a.last_offer_at, 0.0), IDLE_CAP_SECONDS) for a in board.agents),
        dtype=float,
        count=len(board.agents),
    )
    pair_value += (IDLE_TIEBREAK / IDLE_CAP_SECONDS) * idle[pair_agent]

    # The solver's rows are the tasks with a feasible pair; its columns the slots. Each pair is
    # repeated once per slot of its agent, giving the feasible (row, slot) cells in sorted order.
    rows = np.flatnonzero(np.bincount(pair_task, minlength=len(board.tasks)))
    row_of_task = np.zeros(len(board.tasks), dtype=np.int64)
    row_of_task[rows] = np.arange(rows.size)
    per_pair = n_slots[pair_agent]
    cell_pair = np.repeat(np.arange(pair_task.size), per_pair)
    cell_start = np.cumsum(per_pair) - per_pair
    cell_slot = first_slot[pair_agent][cell_pair] + np.arange(cell_pair.size) - cell_start[cell_pair]
    cells = _assign(
        pair_value[cell_pair] + slot_value[cell_slot],
        row_of_task[pair_task][cell_pair],
        cell_slot,
        shape=(rows.size, slot_agent.size),
    )

    chosen_pair, chosen_slot = cell_pair[cells], cell_slot[cells]
    contributions = [
        np.round(parts[c][chosen_slot if c == Criterion.LOAD else chosen_pair] * (w / total_weight), 6)
        for c, w in criteria
    ]
    names = [c.value for c, _ in criteria]
    totals = np.round(np.sum(contributions, axis=0), 6).tolist()
    by_offer = zip(*(c.tolist() for c in contributions), strict=True)
    return [
        (task, agent, total, dict(zip(names, values, strict=True)))
        for task, agent, total, values in zip(
            pair_task[chosen_pair].tolist(), pair_agent[chosen_pair].tolist(), totals, by_offer, strict=True
        )
    ]


# Below this share of feasible (task, slot) cells the sparse solver wins: on 1,000 tasks x 600
# slots with skill and area filters (9% feasible) it takes ~15 ms where the dense one takes
# 40-55 ms (urgency makes rows differ, which lengthens its augmenting paths); with no filters
# (all feasible) the dense one is ahead (~50 vs ~75 ms).
SPARSE_BELOW = 0.3


def _assign(values: np.ndarray, rows: np.ndarray, slots: np.ndarray, *, shape: tuple[int, int]) -> np.ndarray:
    """Indices of the chosen cells among the feasible ones (`values` at (`rows`, `slots`), sorted
    by row then slot): the assignment with the highest total that serves as many rows as possible.

    Both solvers are exact and answer the same optimum. Serving as many tasks as possible comes
    first because a missing pair costs more than any total of scores can make up: the dense
    solver fills infeasible cells with that penalty and drops the pairs it puts there; the sparse
    one needs a full matching of the smaller side, so each of its vertices gets a private
    "nobody" partner at that cost (and edges cost 2 - score, which is positive and never zero, as
    it requires).
    """
    n_rows, n_slots = shape
    smaller = min(n_rows, n_slots)
    penalty = 2.0 * (smaller + 1)  # above any sum of `smaller` scores, each below ~1
    keys = rows * n_slots + slots  # ascending, as the cells are sorted
    if values.size < SPARSE_BELOW * n_rows * n_slots:
        # The smaller side on the matrix rows: LAPJVsp augments from every row.
        tasks_side = n_rows <= n_slots
        side, other = (rows, slots) if tasks_side else (slots, rows)
        n_other = n_slots if tasks_side else n_rows
        graph = csr_matrix(
            (
                np.concatenate([2.0 - values, np.full(smaller, 2.0 + penalty)]),
                (
                    np.concatenate([side, np.arange(smaller)]),
                    np.concatenate([other, n_other + np.arange(smaller)]),
                ),
            ),
            shape=(smaller, n_other + smaller),
        )
        matched, partner = min_weight_full_bipartite_matching(graph)
        real = partner < n_other
        matched, partner = matched[real], partner[real]
        picked_rows, picked_slots = (matched, partner) if tasks_side else (partner, matched)
        return np.searchsorted(keys, picked_rows * n_slots + picked_slots)
    matrix = np.full(shape, -penalty)
    matrix[rows, slots] = values
    picked_rows, picked_slots = linear_sum_assignment(matrix, maximize=True)
    found = np.searchsorted(keys, picked_rows * n_slots + picked_slots)
    found = np.minimum(found, keys.size - 1)
    return found[keys[found] == picked_rows * n_slots + picked_slots]  # drop the infeasible cells


def _criterion(
    criterion: Criterion,
    board: _Board,
    pair_task: np.ndarray,
    pair_agent: np.ndarray,
    feasible: np.ndarray,
    slot_agent: np.ndarray,
    slot_k: np.ndarray,
) -> np.ndarray:
    """The criterion's score for each feasible (task, agent) pair, or for load each slot."""
    if criterion == Criterion.LOAD:
        return scoring.load_scores(board.active[slot_agent] + slot_k, board.capacity[slot_agent])
    if criterion == Criterion.URGENCY:
        return board.urgency[pair_task]
    if criterion == Criterion.SKILL:
        return scoring.skill_scores(scoring.pair_levels(board.levels, board.needs, pair_agent, pair_task))
    if criterion == Criterion.PROXIMITY:
        return scoring.proximity_scores(board.distance[pair_task, pair_agent])
    if criterion == Criterion.CHANNEL_TEAM:
        return scoring.channel_team_scores(board.member[pair_task, pair_agent])
    if criterion == Criterion.QUALITY:
        return scoring.quality_scores(*_quality_inputs(board.agents))[pair_agent]
    tasks = board.tasks
    if criterion == Criterion.RETURNING:
        last = np.fromiter((t.last_agent_id or 0 for t in tasks), dtype=np.int64, count=len(tasks))
        has_last = np.fromiter((t.last_agent_id is not None for t in tasks), dtype=bool, count=len(tasks))
        return scoring.returning_scores(last[pair_task], has_last[pair_task], board.agent_ids[pair_agent])
    if criterion == Criterion.VIP:
        vip = np.fromiter((t.vip for t in tasks), dtype=bool, count=len(tasks))
        if not vip.any():
            return np.zeros(pair_task.size)
        column = {a.id: j for j, a in enumerate(board.agents)}
        dedicated = np.zeros(feasible.shape, dtype=bool)
        for i in np.flatnonzero(vip).tolist():
            for agent_id in tasks[i].dedicated_agents:
                j = column.get(agent_id)
                if j is not None:
                    dedicated[i, j] = True
        # A VIP none of whose dedicated agents can take it this round (away, full, rejected it)
        # is treated like a VIP without dedicated agents: the better agents by quality.
        has_dedicated = (dedicated & feasible).any(axis=1)
        quality = _quality_inputs(board.agents)[1]
        return scoring.vip_scores(
            vip[pair_task], dedicated[pair_task, pair_agent], has_dedicated[pair_task], quality[pair_agent]
        )
    raise ValueError(f"unknown criterion {criterion!r}")


def _quality_inputs(agents: Sequence[AgentSnap]) -> tuple[np.ndarray, np.ndarray]:
    good = np.fromiter(
        (np.nan if a.good_rate_7d is None else a.good_rate_7d for a in agents), dtype=float, count=len(agents)
    )
    weight = np.fromiter((a.quality_weight for a in agents), dtype=float, count=len(agents))
    return good, weight


def _round_robin(board: _Board, feasible: np.ndarray) -> list[Pair]:
    """Tasks in priority order each go to the eligible agent offered least recently (then lowest
    id); that agent moves to the back of the line. Scores play no part."""
    ranks = np.lexsort((board.agent_ids, [a.last_offer_at for a in board.agents]))
    line = np.empty(len(board.agents), dtype=float)
    line[ranks] = np.arange(len(board.agents))
    remaining = board.free.copy()
    next_place = float(len(board.agents))
    pairs: list[Pair] = []
    for i in board.order.tolist():
        eligible = feasible[i] & (remaining > 0)
        if not eligible.any():
            continue
        j = int(np.where(eligible, line, np.inf).argmin())
        remaining[j] -= 1
        line[j] = next_place
        next_place += 1
        pairs.append((i, j, 1.0, {"round_robin": 1.0}))
    return pairs


def _weighted(board: _Board, feasible: np.ndarray, shares: np.ndarray) -> list[Pair]:
    """Tasks in priority order each go to the eligible agent furthest behind their share: the
    lowest (offers today + offers this round + 1) / share; ties to the least recently offered."""
    given = np.zeros(len(board.agents))
    today = np.fromiter((a.offers_today for a in board.agents), dtype=float, count=len(board.agents))
    last = np.fromiter((a.last_offer_at for a in board.agents), dtype=float, count=len(board.agents))
    remaining = board.free.copy()
    pairs: list[Pair] = []
    with np.errstate(divide="ignore"):
        for i in board.order.tolist():
            candidates = np.flatnonzero(feasible[i] & (remaining > 0))
            if candidates.size == 0:
                continue
            behind = (today[candidates] + given[candidates] + 1) / shares[candidates]
            j = int(candidates[np.lexsort((board.agent_ids[candidates], last[candidates], behind))[0]])
            given[j] += 1
            remaining[j] -= 1
            pairs.append((i, j, float(shares[j]), {"weighted": float(shares[j])}))
    return pairs


class _Reasons:
    """Why a task got no offer, from the most to the least fixable: someone could have taken it
    but others won; qualified agents are all full; none of them is online; nobody qualifies."""

    def __init__(
        self,
        board: _Board,
        policy: PolicySpec,
        policy_ok: np.ndarray,
        qualified: np.ndarray,
        feasible: np.ndarray,
        shares: np.ndarray,
    ) -> None:
        self.board, self.policy, self.policy_ok, self.shares = board, policy, policy_ok, shares
        self.qualified = qualified
        self.n_qualified = qualified.sum(axis=1)
        self.n_qualified_online = (qualified & board.online[None, :]).sum(axis=1)
        self.n_feasible = feasible.sum(axis=1)

    def why(self, i: int) -> Waiting:
        task_id = self.board.tasks[i].id
        if self.n_feasible[i]:
            # The optimum (and the round-robin and weighted walks) only leaves a task out when
            # every slot of every agent who could take it went to another task.
            return Waiting(
                task_id,
                WaitReason.OUTRANKED,
                f"{self.n_feasible[i]} free qualified agent(s), all taken by other tasks this round",
            )
        if self.n_qualified_online[i]:
            return Waiting(
                task_id,
                WaitReason.ALL_AT_CAPACITY,
                f"{self.n_qualified_online[i]} qualified agent(s) online, all at capacity",
            )
        if self.n_qualified[i]:
            statuses = Counter(str(self.board.agents[j].status) for j in np.flatnonzero(self.qualified[i]))
            return Waiting(
                task_id,
                WaitReason.NONE_ONLINE,
                "qualified agents: " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())),
            )
        return Waiting(
            task_id,
            WaitReason.NO_QUALIFIED_AGENT,
            _no_one_qualifies(self.board, i, self.policy, self.policy_ok, self.shares),
        )


def _no_one_qualifies(
    board: _Board, i: int, policy: PolicySpec, policy_ok: np.ndarray, shares: np.ndarray
) -> str:
    """What rules everyone out, for the supervisor: the filters no agent passes on their own."""
    task = board.tasks[i]
    if not board.agents:
        return "no agents on the roster"
    if policy_ok[i].any():
        return "every agent who qualifies has rejected it or let it expire"
    problems = []
    if HardFilter.SKILL in policy.filters and not board.has_any_skill[i].any():
        # No agent has any of the skills (holding one would qualify them).
        problems.append(f"no agent has skill {', '.join(sorted(task.skills))}")
    if HardFilter.AREA in policy.filters and not board.area_ok[i].any():
        if task.region_id is not None:
            problems.append(f"no agent covers region {task.region_id} or reaches the address")
        else:
            problems.append("no agent's radius reaches the address")
    if policy.kind == PolicyKind.WEIGHTED and not (shares > 0).any():
        problems.append("the weighted policy gives no agent a share")
    if problems:
        return "; ".join(problems)
    active = [
        f.value
        for f in HardFilter
        if f in policy.filters and (f != HardFilter.CHANNEL_TEAM or board.has_team[i])
    ]
    if policy.kind == PolicyKind.WEIGHTED:
        active.append("weighted share")
    if HardFilter.CHANNEL_TEAM in policy.filters and board.has_team[i]:
        return f"no agent of channel {task.channel_id}'s dedicated team passes every filter ({', '.join(active)})"
    return f"no single agent passes every filter ({', '.join(active)})"
