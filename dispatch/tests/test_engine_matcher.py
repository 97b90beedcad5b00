import dataclasses
import itertools
import random
from collections import Counter

import pytest

from dispatch.engine import matcher
from dispatch.engine.matcher import match
from dispatch.engine.types import (
    AgentSnap,
    AgentStatus,
    Criterion,
    HardFilter,
    PolicyKind,
    PolicySpec,
    TaskSnap,
    WaitReason,
)

NOW = 1_800_000_000.0
LAT, LNG = 31.23, 121.47  # the city centre every scene is built around
KM_LAT = 1 / 111.195  # degrees of latitude per km

SMART = PolicySpec()
NO_FILTERS = PolicySpec(filters=frozenset())
ROUND_ROBIN = PolicySpec(kind=PolicyKind.ROUND_ROBIN)


def agent(agent_id: int, **fields) -> AgentSnap:
    defaults = {"status": AgentStatus.ONLINE, "capacity": 5, "active": 0, "lat": LAT, "lng": LNG}
    return AgentSnap(id=agent_id, **{**defaults, **fields})


def task(task_id: int, **fields) -> TaskSnap:
    defaults = {"lat": LAT, "lng": LNG}
    return TaskSnap(id=task_id, **{**defaults, **fields})


def north(km: float) -> float:
    return LAT + km * KM_LAT


def assigned(result) -> dict[int, int]:
    return {o.task_id: o.agent_id for o in result.offers}


def reasons(result) -> dict[int, WaitReason]:
    return {w.task_id: w.reason for w in result.waiting}


# --- hard filters -------------------------------------------------------------------------------


def test_an_excluded_agent_never_gets_the_task_even_as_the_best_fit():
    # Given agent 1 next door who already rejected task 10, and agent 2 twenty km away
    agents = [agent(1), agent(2, lat=north(20))]

    result = match([task(10, excluded=frozenset({1}))], agents, SMART, now=NOW)

    assert assigned(result) == {10: 2}


def test_a_task_every_qualified_agent_rejected_waits_with_no_qualified_agent():
    result = match([task(10, excluded=frozenset({1, 2}))], [agent(1), agent(2)], SMART, now=NOW)

    assert result.offers == []
    assert result.waiting[0].reason == WaitReason.NO_QUALIFIED_AGENT
    assert "rejected" in result.waiting[0].detail


def test_skill_filter_keeps_the_task_from_agents_without_the_skill():
    # Given the unskilled agent is closer and idle, the skilled one is busier and further
    unskilled = agent(1)
    skilled = agent(2, skills={"ac_install": 3}, active=3, lat=north(8))

    result = match([task(10, skills=frozenset({"ac_install"}))], [unskilled, skilled], SMART, now=NOW)

    assert assigned(result) == {10: 2}
    assert result.offers[0].skill_match is True


def test_a_task_needing_two_skills_prefers_an_agent_with_both_and_skips_one_with_neither():
    agents = [
        agent(1, skills={"ac_install": 3}),
        agent(2, skills={"plumbing": 5}),
        agent(3, skills={"ac_install": 3, "heater": 3}),
    ]

    result = match([task(10, skills=frozenset({"ac_install", "heater"}))], agents, SMART, now=NOW)

    assert assigned(result) == {10: 3}
    assert result.offers[0].skill_match is True


def test_a_task_waits_for_the_busy_agent_who_has_every_skill_rather_than_a_partial_match():
    agents = [
        agent(1, skills={"ac": 5}),
        agent(2, skills={"ac": 3, "heater": 3}, capacity=1, active=1),
    ]

    result = match([task(10, skills=frozenset({"ac", "heater"}))], agents, SMART, now=NOW)

    assert reasons(result) == {10: WaitReason.ALL_AT_CAPACITY}


def test_with_no_one_holding_every_skill_an_agent_with_one_of_them_takes_it():
    agents = [agent(1, skills={"ac": 5}), agent(2, skills={"plumbing": 5})]

    result = match([task(10, skills=frozenset({"ac", "heater"}))], agents, SMART, now=NOW)

    assert assigned(result) == {10: 1}
    assert result.offers[0].skill_match is False


def test_without_the_skill_filter_an_unskilled_agent_may_take_it_and_the_offer_says_so():
    policy = PolicySpec(filters=frozenset(), criteria=((Criterion.PROXIMITY, 1.0),))
    agents = [agent(1), agent(2, skills={"ac_install": 5}, lat=north(30))]

    result = match([task(10, skills=frozenset({"ac_install"}))], agents, policy, now=NOW)

    assert assigned(result) == {10: 1}
    assert result.offers[0].skill_match is False


def test_area_filter_region_agents_stay_home_unless_the_address_is_within_their_radius():
    # Given agent 1 covers region 1 only, with a 10 km radius
    regional = agent(1, regions=frozenset({1}), radius_km=10.0)

    far_other_region = match([task(10, region_id=2, lat=north(25))], [regional], SMART, now=NOW)
    near_other_region = match([task(11, region_id=2, lat=north(6))], [regional], SMART, now=NOW)
    own_region_far = match([task(12, region_id=1, lat=north(60))], [regional], SMART, now=NOW)

    assert reasons(far_other_region) == {10: WaitReason.NO_QUALIFIED_AGENT}
    assert "region 2" in far_other_region.waiting[0].detail
    assert assigned(near_other_region) == {11: 1}  # cross-region, within the radius
    assert assigned(own_region_far) == {12: 1}


def test_an_agent_without_regions_covers_everywhere():
    result = match([task(10, region_id=4, lat=north(80))], [agent(1, radius_km=5.0)], SMART, now=NOW)

    assert assigned(result) == {10: 1}


def test_a_task_with_neither_region_nor_coordinates_rules_no_one_out_by_area():
    result = match([task(10, lat=None, lng=None)], [agent(1, regions=frozenset({1}))], SMART, now=NOW)

    assert assigned(result) == {10: 1}
    assert result.offers[0].distance_km is None


def test_a_task_without_region_is_placed_by_its_coordinates():
    regional = agent(1, regions=frozenset({1}), radius_km=10.0)

    near = match([task(10, lat=north(3))], [regional], SMART, now=NOW)
    far = match([task(11, lat=north(30))], [regional], SMART, now=NOW)

    assert assigned(near) == {10: 1}
    assert reasons(far) == {11: WaitReason.NO_QUALIFIED_AGENT}
    assert "radius" in far.waiting[0].detail


def test_channel_team_filter_gives_a_dedicated_channel_only_to_its_team():
    # Given agent 2 is dedicated to channel 7, agent 1 is a generalist right at the address
    policy = PolicySpec(filters=frozenset({HardFilter.CHANNEL_TEAM}))
    generalist, team = agent(1), agent(2, dedicated_channels=frozenset({7}), lat=north(15))

    result = match([task(10, channel_id=7), task(11, channel_id=8)], [generalist, team], policy, now=NOW)

    assert assigned(result)[10] == 2
    assert 11 in assigned(result)  # a channel without a team goes to anyone


def test_channel_team_filter_makes_the_task_wait_when_the_team_is_full():
    policy = PolicySpec(filters=frozenset({HardFilter.CHANNEL_TEAM}))
    team = agent(2, dedicated_channels=frozenset({7}), capacity=2, active=2)

    result = match([task(10, channel_id=7)], [agent(1), team], policy, now=NOW)

    assert reasons(result) == {10: WaitReason.ALL_AT_CAPACITY}


# --- preferences --------------------------------------------------------------------------------


def test_returning_customer_goes_to_their_last_agent_when_online_and_free():
    # Given the last agent is 4 km further and a little busier than another skilled agent
    last = agent(1, skills={"ac_install": 3}, active=1, lat=north(4))
    other = agent(2, skills={"ac_install": 5})

    result = match(
        [task(10, skills=frozenset({"ac_install"}), last_agent_id=1)], [last, other], SMART, now=NOW
    )

    assert assigned(result) == {10: 1}
    assert result.offers[0].breakdown["returning"] > 0


def test_returning_customer_goes_to_the_best_other_when_their_agent_is_away_or_full():
    skilled, weak = agent(2, skills={"ac_install": 5}), agent(3, skills={"ac_install": 1})
    the_task = task(10, skills=frozenset({"ac_install"}), last_agent_id=1)

    on_break = match([the_task], [agent(1, status=AgentStatus.BREAK), skilled, weak], SMART, now=NOW)
    full = match([the_task], [agent(1, capacity=3, active=3), skilled, weak], SMART, now=NOW)

    assert assigned(on_break) == {10: 2}
    assert assigned(full) == {10: 2}


def test_vip_goes_to_their_dedicated_agent_over_a_closer_better_one():
    dedicated = agent(1, lat=north(12), quality_weight=0.4)
    closer = agent(2, good_rate_7d=0.98, quality_weight=0.9)

    result = match([task(10, vip=True, dedicated_agents=frozenset({1}))], [dedicated, closer], SMART, now=NOW)

    assert assigned(result) == {10: 1}


def test_vip_without_an_available_dedicated_agent_gets_the_higher_quality_agent():
    policy = PolicySpec(criteria=((Criterion.VIP, 1.0),))
    agents = [
        agent(1, status=AgentStatus.OFFLINE),
        agent(2, quality_weight=0.3),
        agent(3, quality_weight=0.8),
    ]

    result = match([task(10, vip=True, dedicated_agents=frozenset({1}))], agents, policy, now=NOW)

    assert assigned(result) == {10: 3}


def test_vip_whose_dedicated_agent_rejected_it_gets_the_higher_quality_agent():
    # Given agent 1 is online and takes another VIP's task, but already rejected task 10; agent 3
    # was offered something a moment ago, so only quality can pick them over agent 2
    policy = PolicySpec(criteria=((Criterion.VIP, 1.0),))
    agents = [agent(1), agent(2, quality_weight=0.3), agent(3, quality_weight=0.8, last_offer_at=NOW - 10)]
    tasks = [
        task(10, vip=True, dedicated_agents=frozenset({1}), excluded=frozenset({1})),
        task(11, vip=True, dedicated_agents=frozenset({1})),
    ]

    result = match(tasks, agents, policy, now=NOW)

    assert assigned(result) == {10: 3, 11: 1}


def test_channel_team_criterion_prefers_the_channel_team_without_excluding_others():
    policy = PolicySpec(filters=frozenset())
    team = agent(2, dedicated_channels=frozenset({7}), lat=north(3))

    result = match([task(10, channel_id=7)], [agent(1), team], policy, now=NOW)

    assert assigned(result) == {10: 2}


def test_urgent_tasks_win_when_slots_are_scarce():
    # Given one free slot, a fresh normal task right next to the agent and urgent ones 20 km away
    the_agent = agent(1, capacity=1)
    normal = task(10, waiting_seconds=60)
    expedited = task(11, expedited=True, lat=north(20))
    repeat = task(12, repeat_repair=True, lat=north(20))

    first = match([normal, expedited, repeat], [the_agent], SMART, now=NOW)
    second = match([normal, repeat], [the_agent], SMART, now=NOW)

    assert assigned(first) == {11: 1}
    assert reasons(first) == {10: WaitReason.OUTRANKED, 12: WaitReason.OUTRANKED}
    assert assigned(second) == {12: 1}


def test_a_task_that_waited_longer_goes_first_among_equals():
    result = match(
        [task(10, waiting_seconds=30), task(11, waiting_seconds=900)], [agent(1, capacity=1)], SMART, now=NOW
    )

    assert assigned(result) == {11: 1}


def test_load_balancing_spreads_a_batch_over_idle_agents():
    # Given three identical idle agents and six identical tasks
    agents = [agent(i, capacity=5) for i in (1, 2, 3)]

    result = match([task(10 + i) for i in range(6)], agents, SMART, now=NOW)

    assert sorted(Counter(assigned(result).values()).values()) == [2, 2, 2]


def test_a_busy_agent_gets_less_so_active_counts_even_out():
    # Given agent 1 already holds 3 items and agent 2 none, both capacity 5
    agents = [agent(1, active=3), agent(2, active=0)]

    result = match([task(10 + i) for i in range(5)], agents, SMART, now=NOW)

    # Both end the round holding 4.
    assert Counter(assigned(result).values()) == {2: 4, 1: 1}


def test_equal_agents_tie_break_to_the_one_idle_longest():
    agents = [agent(1, last_offer_at=NOW - 60), agent(2, last_offer_at=NOW - 3600)]

    result = match([task(10)], agents, SMART, now=NOW)

    assert assigned(result) == {10: 2}


def test_the_breakdown_says_why_and_adds_up_to_the_score():
    result = match(
        [task(10, expedited=True, skills=frozenset({"ac_install"}))],
        [agent(1, skills={"ac_install": 4})],
        SMART,
        now=NOW,
    )

    offer = result.offers[0]
    assert set(offer.breakdown) == {c.value for c in Criterion}
    assert offer.breakdown["urgency"] > 0
    assert offer.breakdown["skill"] == pytest.approx(0.8 * 3 / 26, abs=1e-6)
    assert sum(offer.breakdown.values()) == pytest.approx(offer.score, abs=1e-5)
    assert 0 < offer.score <= 1
    assert offer.distance_km == pytest.approx(0.0, abs=0.01)


def test_optimal_assignment_beats_taking_tasks_one_at_a_time():
    # Given task 10 (ac) and task 11 (heater); agent 1 is great at both, agent 2 good at ac only
    policy = PolicySpec(criteria=((Criterion.SKILL, 1.0),), filters=frozenset())
    agents = [
        agent(1, capacity=1, skills={"ac": 5, "heater": 4}),
        agent(2, capacity=1, skills={"ac": 4, "heater": 1}),
    ]
    tasks = [task(10, skills=frozenset({"ac"})), task(11, skills=frozenset({"heater"}))]
    skill = {(10, 1): 1.0, (10, 2): 0.8, (11, 1): 0.8, (11, 2): 0.2}

    result = match(tasks, agents, policy, now=NOW)

    # Greedy, task by task, each to its best free agent: 10 -> 1 (1.0), then 11 -> 2 (0.2).
    greedy_total = skill[(10, 1)] + skill[(11, 2)]
    assert assigned(result) == {10: 2, 11: 1}
    assert sum(o.score for o in result.offers) == pytest.approx(1.6)
    assert sum(o.score for o in result.offers) > greedy_total


@pytest.mark.parametrize("sparse_below", [0.0, 2.0], ids=["dense-solver", "sparse-solver"])
def test_serving_more_tasks_comes_before_a_higher_total_score(monkeypatch, sparse_below):
    # Given agent 1 sits on task 10 (score 1.0) and is the only one with the skill task 11 needs,
    # 50 km away; agent 2 can take only task 10, 50 km away (0.1 each)
    monkeypatch.setattr(matcher, "SPARSE_BELOW", sparse_below)
    policy = PolicySpec(criteria=((Criterion.PROXIMITY, 1.0),), filters=frozenset({HardFilter.SKILL}))
    agents = [agent(1, capacity=1, skills={"boiler": 3}), agent(2, capacity=1, lat=north(50))]
    tasks = [task(10), task(11, skills=frozenset({"boiler"}), lat=north(-50))]

    result = match(tasks, agents, policy, now=NOW)

    # 1.0 for task 10 alone would score more than 0.1 + 0.1, but leaves task 11 waiting.
    assert assigned(result) == {10: 2, 11: 1}


# --- capacity, every task accounted for ------------------------------------------------------------


def random_scene(rng: random.Random, n_tasks: int, n_agents: int) -> tuple[list[TaskSnap], list[AgentSnap]]:
    skills = ["ac", "heater", "fridge", "tv"]
    agents = [
        agent(
            j,
            status=rng.choice([AgentStatus.ONLINE] * 4 + [AgentStatus.BREAK, AgentStatus.OFFLINE]),
            capacity=(capacity := rng.randint(1, 4)),
            active=rng.randint(0, capacity),
            skills={s: rng.randint(1, 5) for s in rng.sample(skills, rng.randint(1, 3))},
            regions=frozenset(rng.sample([1, 2, 3], rng.randint(0, 2))),
            lat=north(rng.uniform(-20, 20)),
            radius_km=rng.choice([5.0, 15.0]),
            dedicated_channels=frozenset({9}) if rng.random() < 0.2 else frozenset(),
            last_offer_at=NOW - rng.uniform(0, 5000),
            offers_today=rng.randint(0, 10),
        )
        for j in range(1, n_agents + 1)
    ]
    tasks = [
        task(
            100 + i,
            region_id=rng.choice([None, 1, 2, 3]),
            lat=north(rng.uniform(-20, 20)) if rng.random() < 0.9 else None,
            skills=frozenset(rng.sample(skills, rng.randint(0, 2))),
            channel_id=rng.choice([8, 9]),
            expedited=rng.random() < 0.2,
            vip=rng.random() < 0.1,
            dedicated_agents=frozenset(rng.sample(range(1, n_agents + 1), 1)),
            last_agent_id=rng.choice([None, rng.randint(1, n_agents)]),
            excluded=frozenset(rng.sample(range(1, n_agents + 1), rng.randint(0, 3))),
            waiting_seconds=rng.uniform(0, 1200),
        )
        for i in range(n_tasks)
    ]
    return tasks, agents


POLICIES = [
    SMART,
    PolicySpec(filters=frozenset(HardFilter)),
    NO_FILTERS,
    ROUND_ROBIN,
    PolicySpec(kind=PolicyKind.WEIGHTED, shares={j: j % 3 for j in range(1, 13)}),
]


@pytest.mark.parametrize(
    "policy", POLICIES, ids=["smart", "smart-all-filters", "smart-no-filters", "round-robin", "weighted"]
)
def test_capacity_is_never_exceeded_and_every_task_is_offered_or_waits(policy):
    rng = random.Random(20261122)
    for _ in range(40):
        tasks, agents = random_scene(rng, n_tasks=rng.randint(1, 30), n_agents=12)

        result = match(tasks, agents, policy, now=NOW)

        per_agent = Counter(o.agent_id for o in result.offers)
        by_id = {a.id: a for a in agents}
        for agent_id, n in per_agent.items():
            a = by_id[agent_id]
            assert a.status == AgentStatus.ONLINE
            assert n <= a.capacity - a.active
        tasks_by_id = {t.id: t for t in tasks}
        for offer in result.offers:
            assert offer.agent_id not in tasks_by_id[offer.task_id].excluded
        offered = [o.task_id for o in result.offers]
        waiting = [w.task_id for w in result.waiting]
        assert len(offered) == len(set(offered))
        assert sorted(offered + waiting) == sorted(tasks_by_id)


def test_rounds_played_in_sequence_fill_agents_exactly_to_capacity():
    # Given offers count as active items in the next round, like the real pool
    rng = random.Random(7)
    tasks, agents = random_scene(rng, n_tasks=60, n_agents=8)
    agents = [dataclasses.replace(a, status=AgentStatus.ONLINE, active=0) for a in agents]
    for _ in range(10):
        result = match(tasks, agents, NO_FILTERS, now=NOW)
        given = Counter(o.agent_id for o in result.offers)
        agents = [dataclasses.replace(a, active=a.active + given[a.id]) for a in agents]
        served = {o.task_id for o in result.offers}
        tasks = [t for t in tasks if t.id not in served]

        assert all(a.active <= a.capacity for a in agents)
    assert sum(a.capacity for a in agents) == sum(a.active for a in agents) or not tasks


# --- optimality against brute force, for both solvers ----------------------------------------------


def brute_force_best(tasks, agents, policy) -> tuple[int, float]:
    """(most tasks served, best total score) over every assignment, scoring each (task, slot) by
    asking the matcher about that one pair with the agent's load set to the slot's."""
    free = {a.id: max(0, a.capacity - a.active) if a.status == AgentStatus.ONLINE else 0 for a in agents}
    cell = {}
    for t, a in itertools.product(tasks, agents):
        for k in range(free[a.id]):
            single = match([t], [dataclasses.replace(a, active=a.active + k)], policy, now=NOW)
            if single.offers:
                cell[t.id, a.id, k] = single.offers[0].score
    best = (0, 0.0)

    def walk(i: int, used: dict[int, int], served: int, total: float) -> None:
        nonlocal best
        if i == len(tasks):
            best = max(best, (served, round(total, 6)))
            return
        walk(i + 1, used, served, total)
        for a in agents:
            key = (tasks[i].id, a.id, used[a.id])
            if key in cell:
                used[a.id] += 1
                walk(i + 1, used, served + 1, total + cell[key])
                used[a.id] -= 1

    walk(0, dict.fromkeys(free, 0), 0, 0.0)
    return best


@pytest.mark.parametrize("sparse_below", [0.0, 2.0], ids=["dense-solver", "sparse-solver"])
def test_the_matcher_finds_the_best_assignment_that_serves_the_most_tasks(monkeypatch, sparse_below):
    monkeypatch.setattr(matcher, "SPARSE_BELOW", sparse_below)
    rng = random.Random(99)
    for _ in range(12):
        tasks, agents = random_scene(rng, n_tasks=rng.randint(2, 5), n_agents=3)
        agents = [dataclasses.replace(a, status=AgentStatus.ONLINE) for a in agents]

        result = match(tasks, agents, SMART, now=NOW)

        served, total = brute_force_best(tasks, agents, SMART)
        assert len(result.offers) == served
        assert sum(o.score for o in result.offers) == pytest.approx(total, abs=1e-4)


def test_dense_and_sparse_solvers_agree_on_larger_pools(monkeypatch):
    rng = random.Random(5)
    for _ in range(5):
        tasks, agents = random_scene(rng, n_tasks=120, n_agents=25)
        totals = []
        for sparse_below in (0.0, 2.0):
            monkeypatch.setattr(matcher, "SPARSE_BELOW", sparse_below)
            result = match(tasks, agents, SMART, now=NOW)
            totals.append((len(result.offers), sum(o.score for o in result.offers)))

        (dense_served, dense_total), (sparse_served, sparse_total) = totals
        assert dense_served == sparse_served
        assert dense_total == pytest.approx(sparse_total, abs=1e-5)


# --- round robin and weighted ---------------------------------------------------------------------


def test_round_robin_cycles_through_agents_least_recently_offered_first():
    agents = [
        agent(1, last_offer_at=NOW - 10),
        agent(2, last_offer_at=NOW - 30),
        agent(3, last_offer_at=NOW - 20),
    ]
    tasks = [task(10 + i, waiting_seconds=100 - i) for i in range(6)]  # priority order is 10, 11, ...

    result = match(tasks, agents, ROUND_ROBIN, now=NOW)

    assert [o.agent_id for o in result.offers] == [2, 3, 1, 2, 3, 1]
    assert all(o.breakdown == {"round_robin": 1.0} for o in result.offers)


def test_round_robin_skips_an_agent_who_cannot_take_a_task_and_keeps_their_turn():
    # Given agent 1 (first in line) lacks the skill task 10 needs
    agents = [agent(1, last_offer_at=1.0), agent(2, skills={"ac": 3}, last_offer_at=2.0)]
    tasks = [task(10, skills=frozenset({"ac"}), waiting_seconds=50), task(11, waiting_seconds=10)]

    result = match(tasks, agents, ROUND_ROBIN, now=NOW)

    assert assigned(result) == {10: 2, 11: 1}


def test_round_robin_offers_carry_distance_and_skill_match_for_comparison():
    policy = PolicySpec(kind=PolicyKind.ROUND_ROBIN, filters=frozenset())

    result = match([task(10, skills=frozenset({"ac"}), lat=north(7))], [agent(1)], policy, now=NOW)

    assert result.offers[0].distance_km == pytest.approx(7.0, abs=0.01)
    assert result.offers[0].skill_match is False


def test_weighted_follows_fixed_shares_over_many_tasks():
    policy = PolicySpec(kind=PolicyKind.WEIGHTED, shares={1: 3, 2: 1})
    agents = [agent(1, capacity=1000), agent(2, capacity=1000), agent(3, capacity=1000)]

    result = match([task(i) for i in range(400)], agents, policy, now=NOW)

    assert Counter(assigned(result).values()) == {1: 300, 2: 100}
    assert result.offers[0].breakdown in ({"weighted": 3.0}, {"weighted": 1.0})


def test_weighted_counts_what_each_agent_already_got_today():
    policy = PolicySpec(kind=PolicyKind.WEIGHTED, shares={1: 1, 2: 1})
    agents = [agent(1, offers_today=10, capacity=100), agent(2, offers_today=0, capacity=100)]

    result = match([task(i) for i in range(20)], agents, policy, now=NOW)

    assert Counter(assigned(result).values()) == {2: 15, 1: 5}


def test_weighted_without_any_share_leaves_tasks_waiting_with_the_reason():
    policy = PolicySpec(kind=PolicyKind.WEIGHTED)

    result = match([task(10)], [agent(1)], policy, now=NOW)

    assert reasons(result) == {10: WaitReason.NO_QUALIFIED_AGENT}
    assert "share" in result.waiting[0].detail


# --- why a task waits ----------------------------------------------------------------------------


def test_no_qualified_agent_names_the_skills_nobody_has():
    result = match(
        [task(10, skills=frozenset({"boiler", "ac"}))], [agent(1, skills={"heater": 5})], SMART, now=NOW
    )

    assert reasons(result) == {10: WaitReason.NO_QUALIFIED_AGENT}
    assert result.waiting[0].detail == "no agent has skill ac, boiler"


def test_none_online_when_qualified_agents_are_all_away():
    agents = [
        agent(1, status=AgentStatus.BREAK),
        agent(2, status=AgentStatus.OFFLINE),
        agent(3, status=AgentStatus.BUSY),
    ]

    result = match([task(10)], agents, SMART, now=NOW)

    assert reasons(result) == {10: WaitReason.NONE_ONLINE}
    assert result.waiting[0].detail == "qualified agents: 1 break, 1 busy, 1 offline"


def test_all_at_capacity_when_qualified_online_agents_are_full():
    # An unqualified free agent does not count: they lack the skill
    agents = [agent(1, skills={"ac": 3}, capacity=2, active=2), agent(2)]

    result = match([task(10, skills=frozenset({"ac"}))], agents, SMART, now=NOW)

    assert reasons(result) == {10: WaitReason.ALL_AT_CAPACITY}


def test_outranked_when_free_agents_went_to_other_tasks():
    result = match([task(10), task(11, expedited=True)], [agent(1, capacity=1)], SMART, now=NOW)

    assert assigned(result) == {11: 1}
    assert reasons(result) == {10: WaitReason.OUTRANKED}


def test_an_empty_roster_leaves_everything_waiting_for_a_qualified_agent():
    result = match([task(10)], [], SMART, now=NOW)

    assert reasons(result) == {10: WaitReason.NO_QUALIFIED_AGENT}
    assert result.waiting[0].detail == "no agents on the roster"


def test_an_empty_pool_is_an_empty_result():
    result = match([], [agent(1)], SMART, now=NOW)

    assert result.offers == [] and result.waiting == []


def test_offers_and_waiting_come_in_priority_order():
    tasks = [
        task(10),
        task(11, expedited=True),
        task(12, waiting_seconds=500),
        task(13, excluded=frozenset({1})),
    ]

    result = match(tasks, [agent(1)], SMART, now=NOW)

    assert [o.task_id for o in result.offers] == [11, 12, 10]


def test_a_pool_or_roster_listing_an_id_twice_is_refused():
    with pytest.raises(ValueError, match="lists a task twice"):
        match([task(10), task(10)], [agent(1)], SMART, now=NOW)
    with pytest.raises(ValueError, match="lists an agent twice"):
        match([task(10)], [agent(1), agent(1)], SMART, now=NOW)
