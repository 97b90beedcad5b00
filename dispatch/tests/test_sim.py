"""The simulator on small scenes whose outcome can be worked out by hand, and the generated days."""

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from dispatch.engine.types import PolicyKind, PolicySpec
from dispatch.sim.metrics import summarise
from dispatch.sim.model import Behaviour, PolicySet, Scenario, SimAgent, SimOrder, Supervisor
from dispatch.sim.policies import builtin
from dispatch.sim.run import compare, simulate
from dispatch.sim.scenarios import generate

START = datetime(2026, 11, 11, tzinfo=UTC)
INSTANT = Behaviour(acceptance=1.0, acceptance_unskilled=1.0, response_median_seconds=0.0, response_sigma=0.0)
SMART = PolicySet.single("smart", PolicySpec())
ROBIN = PolicySet.single("robin", PolicySpec(kind=PolicyKind.ROUND_ROBIN, filters=frozenset()))


def order(order_id: int, at: float = 0.0, **fields) -> SimOrder:
    defaults = {"ready_seconds": at, "due_seconds": at + 3600, "work_minutes": 10.0}
    return SimOrder(id=order_id, **{**defaults, **fields})


def person(agent_id: int, **fields) -> SimAgent:
    defaults = {"name": f"a{agent_id}", "capacity": 1, "behaviour": INSTANT, "shifts": ((0.0, 86400.0),)}
    return SimAgent(id=agent_id, **{**defaults, **fields})


def scene(orders, agents, **fields) -> Scenario:
    return Scenario(
        name="scene", start=START, horizon_seconds=86400.0, orders=orders, agents=agents, **fields
    )


def test_orders_queue_for_one_agent_and_are_served_in_turn():
    # given one agent and three orders of 10 minutes arriving together
    outcome = simulate(scene([order(1), order(2), order(3)], [person(1)]), ROBIN)

    # then they are accepted at 0, 10 and 20 minutes, each finished 10 minutes later
    waits = sorted(t.accepted_at for t in outcome.tasks)
    assert waits == [0.0, 600.0, 1200.0]
    assert sorted(t.finished_at for t in outcome.tasks) == [600.0, 1200.0, 1800.0]
    assert summarise(outcome)["accept_minutes"]["mean"] == 10.0


def test_work_takes_longer_for_an_agent_without_the_skill_and_shorter_for_an_expert():
    expert = person(1, skills={"repair": 5})
    outsider = person(2, skills={"billing": 5})
    task = order(1, skills=frozenset({"repair"}))

    expert_done = simulate(scene([task], [expert]), ROBIN).tasks[0].finished_at
    outsider_done = simulate(scene([task], [outsider]), ROBIN).tasks[0].finished_at

    assert expert_done == pytest.approx(10 * 60 * INSTANT.level_factors[4])
    assert outsider_done == pytest.approx(10 * 60 * INSTANT.unskilled_factor)


def test_an_on_site_job_starts_with_the_drive_and_leaves_the_agent_at_the_customer():
    # an engineer 10 km north of a job (0.0899 degrees of latitude)
    engineer = person(1, lat=31.3199, lng=121.47)
    job = order(1, lat=31.23, lng=121.47, on_site=True, work_minutes=30.0)

    outcome = simulate(scene([job], [engineer]), ROBIN)

    task = outcome.tasks[0]
    drive_km = task.travel_km
    assert drive_km == pytest.approx(10.0 * INSTANT.road_factor, rel=0.01)
    assert task.finished_at == pytest.approx(drive_km / INSTANT.speed_kmh * 3600 + 30 * 60)
    assert (outcome.agents[0].lat, outcome.agents[0].lng) == (31.23, 121.47)
    assert summarise(outcome)["mean_travel_km"] == pytest.approx(drive_km, abs=0.001)


def test_a_rejected_order_never_goes_back_to_the_agent_who_rejected_it():
    refuser = person(1, behaviour=replace(INSTANT, acceptance=0.0, acceptance_unskilled=0.0))
    taker = person(2, behaviour=INSTANT)

    outcome = simulate(scene([order(1)], [refuser, taker]), ROBIN)

    task = outcome.tasks[0]
    assert task.agent.spec.id == 2
    assert task.excluded == {1}
    assert outcome.counters.rejects == 1


def test_after_the_policys_rounds_fail_the_supervisor_assigns_by_hand():
    # given three agents who reject everything and a policy allowing three rounds
    never = replace(INSTANT, acceptance=0.0, acceptance_unskilled=0.0)
    agents = [person(i, behaviour=never) for i in (1, 2, 3)]
    supervisor = Supervisor(reaction_minutes=10.0)

    outcome = simulate(scene([order(1)], agents, supervisor=supervisor), ROBIN)

    # then the order is escalated after the third reject and assigned by hand ten minutes later
    task = outcome.tasks[0]
    assert outcome.counters.rejects == 3
    assert task.escalated and task.manual
    assert task.accepted_at == pytest.approx(600.0)
    assert summarise(outcome)["escalated"] == 1


def test_a_dark_agent_lets_the_offer_expire_and_the_order_moves_on():
    # agent 1 is dark (looks online, answers nothing); agent 2 answers at once
    dark = person(1, dark=((0.0, 7200.0),))
    awake = person(2, shifts=((0.0, 86400.0),))
    policy = PolicySet.single(
        "robin", PolicySpec(kind=PolicyKind.ROUND_ROBIN, filters=frozenset(), offer_seconds=300)
    )

    outcome = simulate(scene([order(1)], [dark, awake]), policy)

    task = outcome.tasks[0]
    assert outcome.counters.expiries == 1
    assert task.agent.spec.id == 2
    assert task.accepted_at == pytest.approx(300.0)


def test_an_agent_going_off_shift_hands_back_open_offers_and_still_finishes_accepted_work():
    slow = replace(INSTANT, response_median_seconds=120.0)
    staying = person(2, shifts=((200.0, 86400.0),))

    # an offer still unanswered when the shift ends at 01:00 goes back and to the next agent
    released = simulate(scene([order(1)], [person(1, shifts=((0.0, 60.0),), behaviour=slow), staying]), ROBIN)
    # work accepted before the shift ends is finished after it
    kept = simulate(scene([order(1)], [person(1, shifts=((0.0, 60.0),))]), ROBIN)

    assert released.counters.released == 1
    assert released.tasks[0].agent.spec.id == 2
    assert released.tasks[0].accepted_at == pytest.approx(200.0)
    assert kept.tasks[0].finished_at == pytest.approx(600.0)


def test_a_customer_who_waits_too_long_abandons_and_counts_as_a_breach():
    busy = person(1)
    first = order(1, work_minutes=60.0)
    impatient = order(2, patience_minutes=5.0)

    metrics = summarise(simulate(scene([first, impatient], [busy]), ROBIN))

    assert metrics["abandoned"] == 1
    assert metrics["sla_breaches"] == 1
    assert metrics["series"]["waiting"][0] == 1  # at the 00:00 mark the second order waits


def test_a_failed_first_visit_brings_a_repeat_repair_later_in_the_day():
    never_fixes = replace(INSTANT, fix_levels=(0.0,) * 5, fix_unskilled=0.0, revisit_after_minutes=60.0)
    engineer = person(1, lat=31.23, lng=121.47, behaviour=never_fixes)
    job = order(1, lat=31.23, lng=121.47, on_site=True, customer_id=9, work_minutes=30.0)

    outcome = simulate(scene([job], [engineer]), ROBIN)

    repeats = [t for t in outcome.tasks if t.order.repeat_repair]
    assert outcome.counters.repeat_orders >= 1
    assert repeats[0].order.ready_seconds == pytest.approx(30 * 60 + 60 * 60)
    assert summarise(outcome)["first_time_fix_rate"] == 0.0


def test_smart_sends_work_to_the_agent_holding_the_skill_round_robin_does_not():
    agents = [person(1, skills={"billing": 4}), person(2, skills={"repair": 4})]
    orders = [order(i, at=i * 3600.0, skills=frozenset({"repair"})) for i in range(1, 5)]

    result = compare(scene(orders, agents), [SMART, ROBIN], seed=3)

    smart, robin = result["runs"]
    assert smart["skill_match_rate"] == 1.0
    assert robin["skill_match_rate"] == 0.5
    assert result["scenario"]["orders"] == 4


def test_the_same_seed_replays_the_same_day():
    scenario = generate("storm", seed=4, orders=400, agents=12)

    first = summarise(simulate(scenario, SMART, seed=4))
    again = summarise(simulate(scenario, SMART, seed=4))

    first.pop("wall_seconds"), again.pop("wall_seconds")
    assert first == again


def test_double11_has_ten_thousand_orders_forty_agents_and_a_threefold_evening_peak():
    scenario = generate("double11", seed=1)

    desk = [o for o in scenario.orders if not o.on_site]
    per_hour = [sum(1 for o in desk if h * 3600 <= o.ready_seconds < (h + 1) * 3600) for h in range(24)]
    day = sum(per_hour[9:19]) / 10
    peak = sum(per_hour[20:23]) / 3
    assert len(scenario.orders) == 10_000 and len(scenario.agents) == 40
    assert 2.6 < peak / day < 3.4
    # an order arriving after 20:00 local gets the evening hour on top of its two
    late = next(
        o for o in desk if o.ready_seconds >= 20.5 * 3600 and not o.expedited and o.category != "fresh_food"
    )
    assert late.due_seconds - late.ready_seconds == pytest.approx(3 * 3600)


def test_the_storm_darkens_a_quarter_of_the_agents():
    scenario = generate("storm", seed=2)

    assert sum(1 for a in scenario.agents if a.dark) == round(len(scenario.agents) * 0.25)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: generate("payday"), "unknown scenario 'payday'"),
        (lambda: Behaviour(acceptance=1.5), "acceptance must be a probability"),
        (lambda: person(1, capacity=0), "capacity must be at least 1"),
        (lambda: person(1, shifts=((10.0, 5.0),)), "a shift ends before it starts"),
        (lambda: scene([order(1), order(1)], [person(1)]), "lists an order twice"),
        (lambda: scene([order(1)], []), "has no agents"),
        (lambda: compare(scene([order(1)], [person(1)]), []), "at least one policy"),
        (lambda: builtin("greedy"), "unknown policy 'greedy'"),
    ],
)
def test_bad_scenarios_and_policies_are_refused_with_what_is_wrong(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def erlang_c(servers: int, offered: float) -> float:
    """The probability of waiting in an M/M/c queue (Erlang's C formula), offered = λ / μ."""
    tail = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return tail / (sum(offered**k / math.factorial(k) for k in range(servers)) + tail)


def test_one_queue_of_identical_agents_reproduces_erlang_c():
    """M/M/3 at 50% through the real engine: Poisson arrivals, exponential work, round robin,
    capacity 1, instant answers, nobody abandons. Over 100,000 orders the share that waits and
    the mean wait agree with Erlang C within 5%."""
    import numpy as np

    servers, work_minutes, utilisation, arrivals = 3, 10.0, 0.5, 100_000
    mu = 1 / work_minutes
    lam = utilisation * servers * mu
    rng = np.random.default_rng(2026)
    ready = np.cumsum(rng.exponential(1 / lam, arrivals)) * 60
    work = rng.exponential(work_minutes, arrivals)
    end = float(ready[-1]) + 1
    orders = [
        SimOrder(id=i + 1, ready_seconds=float(ready[i]), due_seconds=math.inf, work_minutes=float(work[i]))
        for i in range(arrivals)
    ]
    agents = [person(j, shifts=((0.0, 2 * end),)) for j in range(1, servers + 1)]
    scenario = Scenario(name="erlang", start=START, horizon_seconds=end, orders=orders, agents=agents)

    outcome = simulate(
        scenario, PolicySet.single("rr", PolicySpec(kind=PolicyKind.ROUND_ROBIN, filters=frozenset()))
    )

    waits = np.asarray([t.accepted_at - t.order.ready_seconds for t in outcome.tasks]) / 60
    p_wait = erlang_c(servers, lam / mu)
    mean_wait = p_wait / (servers * mu - lam)
    assert len(waits) == arrivals
    assert (waits > 1e-9).mean() == pytest.approx(p_wait, rel=0.05)
    assert waits.mean() == pytest.approx(mean_wait, rel=0.05)
