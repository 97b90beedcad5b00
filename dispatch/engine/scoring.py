"""The smart policy's scores: each criterion in [0, 1], elementwise over arrays of (task, agent) pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dispatch.engine.types import Criterion, PolicySpec

# The criteria and weights of a smart policy that names none, listed by what they decide:
# - urgency first: the only row (task) criterion, it never changes who serves a task, only which
#   tasks are served when slots are scarce (seed 000 lists 紧急程度 first, "优先处理");
# - then the relationship criteria, sparse and meant to decide when they apply (seed 003: a VIP
#   to their dedicated agent, a returning customer to the agent who served them, a channel to its
#   team);
# - then the graded fit every pair has, in the order the seeds rank it: skill, load, proximity,
#   quality.
# The weights are explicit rather than halving down the list (`default_weights`): halving would
# leave quality 1/255 of the score, too little to ever matter, and would make urgency 128/255
# against 15/255 of graded fit, a matrix of near-equal cells on which the assignment solver
# takes two to three times as long. With these (total 26), an expedited task (0.7 * 7/26 = 0.19) outweighs any
# graded-fit difference between two tasks for the same agent under the default filters (at most
# 0.8 * 3/26 skill + 2/26 proximity = 0.17), and a returning customer's agent (4/26 = 0.15)
# outweighs realistic differences in skill, load and distance between two agents.
DEFAULT_CRITERIA: tuple[tuple[Criterion, float], ...] = (
    (Criterion.URGENCY, 7.0),
    (Criterion.VIP, 5.0),
    (Criterion.RETURNING, 4.0),
    (Criterion.CHANNEL_TEAM, 2.0),
    (Criterion.SKILL, 3.0),
    (Criterion.LOAD, 2.0),
    (Criterion.PROXIMITY, 2.0),
    (Criterion.QUALITY, 1.0),
)

NEUTRAL = 0.5  # a criterion that cannot tell agents apart for this task (no skill needed, no coordinates)
NEAR_KM = 5.0  # seed 000: engineers within 5 km preferred
LIGHT_LOAD = 2  # seed 000: fewer than 2 open tasks preferred
GOOD_RATE_7D = 0.9  # seed 000: above 90% good ratings in the last week preferred
MAX_LEVEL = 5

# Urgency of a task, in [0, 1]. Expedited (the customer paid for it) outranks a repeat repair
# (we failed them once); aging lifts any task that waits long or keeps failing rounds so it cannot
# starve behind a stream of better-placed ones, capped below the expedited bonus so an old task
# does not overtake a paid one.
EXPEDITED = 0.7
REPEAT_REPAIR = 0.5
AGING_MAX = 0.3
AGING_FULL_SECONDS = 1800.0  # half an hour waiting earns the whole aging bonus...
AGING_FULL_ROUNDS = 3.0  # ...and so do three failed rounds (the default L2 threshold)


def default_weights(names: Sequence[Criterion | str]) -> tuple[tuple[Criterion, float], ...]:
    """Weights for criteria an admin put in order without weights: 2 ** (n - 1 - i), so each
    criterion outweighs all the ones after it together ("skill first, then load balance")."""
    criteria = [Criterion(name) for name in names]
    if len(set(criteria)) != len(criteria):
        raise ValueError(f"a criterion is listed twice: {[c.value for c in criteria]}")
    n = len(criteria)
    return tuple((criterion, float(2 ** (n - 1 - i))) for i, criterion in enumerate(criteria))


def policy_criteria(policy: PolicySpec) -> tuple[tuple[Criterion, float], ...]:
    """The policy's (criterion, weight) pairs, or DEFAULT_CRITERIA when it names none."""
    if not policy.criteria:
        return DEFAULT_CRITERIA
    seen: set[Criterion] = set()
    criteria = []
    for name, weight in policy.criteria:
        criterion = Criterion(name)
        if criterion in seen:
            raise ValueError(f"criterion {criterion.value} is listed twice")
        if not weight >= 0:  # also refuses NaN
            raise ValueError(f"the weight of {criterion.value} must be non-negative, not {weight}")
        seen.add(criterion)
        criteria.append((criterion, float(weight)))
    return tuple(criteria)


def urgency_scores(
    expedited: np.ndarray, repeat_repair: np.ndarray, waiting_seconds: np.ndarray, rounds: np.ndarray
) -> np.ndarray:
    """(tasks,) urgency: EXPEDITED + REPEAT_REPAIR + up to AGING_MAX for waiting, capped at 1."""
    aging = np.minimum(
        1.0, np.maximum(waiting_seconds, 0.0) / AGING_FULL_SECONDS + np.maximum(rounds, 0) / AGING_FULL_ROUNDS
    )
    raw = EXPEDITED * expedited + REPEAT_REPAIR * repeat_repair + AGING_MAX * aging
    return np.minimum(1.0, raw)


def pair_levels(
    levels: np.ndarray, needs: np.ndarray, agent_index: np.ndarray, task_index: np.ndarray
) -> np.ndarray:
    """(..., k): each agent's level in each skill each task calls for, NaN where a task calls for
    fewer than k. `levels` is (agents, skills) with 0 where not held, `needs` (tasks, k) skill
    indices padded with -1; `agent_index` and `task_index` broadcast together (pairs, or a grid).

    A gather rather than a (tasks x skills) @ (skills x agents) product: tasks need one or two
    skills, and a BLAS call this small costs more in thread wake-ups (~6 ms with two OpenBLAS
    threads on two cores) than it computes.
    """
    padded = np.concatenate([levels, np.full((levels.shape[0], 1), np.nan)], axis=1)
    index = np.where(needs < 0, levels.shape[1], needs)  # -1 reads the NaN column
    return padded[agent_index[..., None], index[task_index]]


def skill_scores(levels: np.ndarray) -> np.ndarray:
    """Mean over the task's skills of the agent's level / 5 (0 for a skill they lack); NEUTRAL
    for a task that needs no skill. `levels` as `pair_levels` gives them, skills on the last axis."""
    counts = (~np.isnan(levels)).sum(axis=-1)
    total = np.nansum(np.clip(levels, 0, MAX_LEVEL), axis=-1) / MAX_LEVEL
    return np.where(counts > 0, total / np.maximum(counts, 1), NEUTRAL)


def skill_coverage(levels: np.ndarray) -> np.ndarray:
    """The agent holds every skill the task calls for (true when it calls for none); `levels` as
    `pair_levels` gives them."""
    return ~(levels <= 0).any(axis=-1)  # NaN (no skill in that place) compares False


def proximity_scores(distance_km: np.ndarray) -> np.ndarray:
    """1 within NEAR_KM, then NEAR_KM / d (10 km: 0.5, 50 km: 0.1); NEUTRAL without coordinates."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.minimum(1.0, NEAR_KM / distance_km)
    scores[np.isnan(distance_km)] = NEUTRAL
    return scores


def load_scores(load: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Score of giving an agent one more item when they already hold `load`: 1 under LIGHT_LOAD,
    then falling by 1/capacity per item. Computed per capacity slot (slot k of an agent holding
    `active` items has load active + k), so the optimal assignment itself spreads the work:
    a second item to a busy agent is worth less than a first one to an idle agent."""
    capacity = np.maximum(capacity, 1)
    return np.where(load < LIGHT_LOAD, 1.0, np.maximum(0.0, 1.0 - (load - 1) / capacity))


def quality_scores(good_rate_7d: np.ndarray, quality_weight: np.ndarray) -> np.ndarray:
    """1 at >= 90% good ratings this week; otherwise the agent's profile quality weight, averaged
    with the weekly rate when there is one (NaN: no ratings this week)."""
    blended = np.where(np.isnan(good_rate_7d), quality_weight, (good_rate_7d + quality_weight) / 2)
    return np.where(good_rate_7d >= GOOD_RATE_7D, 1.0, np.clip(blended, 0.0, 1.0))


def returning_scores(last_agent: np.ndarray, has_last: np.ndarray, agent_id: np.ndarray) -> np.ndarray:
    """1 where the agent is the one who served this customer last."""
    return ((last_agent == agent_id) & has_last).astype(float)


def vip_scores(
    vip: np.ndarray, dedicated: np.ndarray, has_dedicated: np.ndarray, quality: np.ndarray
) -> np.ndarray:
    """For a VIP task, 1 for their dedicated agents and 0 for others; for a VIP none of whose
    dedicated agents can take it (or who has none), the agent's quality weight, so a VIP still
    gets the better agents; 0 for every other task."""
    return np.where(vip, np.where(has_dedicated, dedicated.astype(float), quality), 0.0)


def channel_team_scores(member: np.ndarray) -> np.ndarray:
    """1 where the agent is dedicated to the task's channel."""
    return member.astype(float)
