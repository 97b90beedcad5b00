import pytest

from dispatch.engine.rounds import (
    RoundGroup,
    ScopedPolicy,
    needs_supervisor,
    offer_windows,
    plan_round,
    resolve_policy,
    rounds_exhausted,
)
from dispatch.engine.types import (
    AgentSnap,
    AgentStatus,
    PolicyKind,
    PolicySpec,
    TaskSnap,
    Waiting,
    WaitReason,
)

NOW = 1_800_000_000.0
DEFAULT = ScopedPolicy(name="default", spec=PolicySpec())


def agent(agent_id: int, **fields) -> AgentSnap:
    return AgentSnap(id=agent_id, **{"status": AgentStatus.ONLINE, "capacity": 1, "active": 0, **fields})


def test_the_most_specific_policy_whose_scope_covers_the_task_wins():
    channel = ScopedPolicy(name="jd", spec=PolicySpec(), channel_id=1)
    channel_and_type = ScopedPolicy(name="jd repair", spec=PolicySpec(), channel_id=1, service_type="repair")
    other_region = ScopedPolicy(name="north", spec=PolicySpec(), region_id=9)
    book = [other_region, channel, channel_and_type]

    assert resolve_policy(book, DEFAULT, channel_id=1, category="repair", region_id=2) is channel_and_type
    assert resolve_policy(book, DEFAULT, channel_id=1, category="apparel", region_id=2) is channel
    assert resolve_policy(book, DEFAULT, channel_id=2, category="repair", region_id=2) is DEFAULT


def test_equally_specific_policies_are_decided_by_name():
    b = ScopedPolicy(name="b", spec=PolicySpec(), channel_id=1)
    a = ScopedPolicy(name="a", spec=PolicySpec(), region_id=3)

    assert resolve_policy([b, a], DEFAULT, channel_id=1, category="", region_id=3) is a


def test_groups_of_one_round_share_each_agents_free_capacity():
    # given one agent with one free slot and two groups under different policies
    smart = RoundGroup(PolicySpec(), [TaskSnap(id=1)])
    robin = RoundGroup(PolicySpec(kind=PolicyKind.ROUND_ROBIN), [TaskSnap(id=2)])

    # when the round is planned
    result = plan_round([smart, robin], [agent(7)], now=NOW)

    # then only the first group's task is offered; the second waits, outranked
    assert [(o.task_id, o.agent_id) for o in result.offers] == [(1, 7)]
    assert [(w.task_id, w.reason) for w in result.waiting] == [(2, WaitReason.ALL_AT_CAPACITY)]


def test_a_reviewer_whose_only_skill_is_risk_review_gets_only_review_tasks():
    reviewer = agent(5, skills={"risk_review": 3})
    orders = RoundGroup(PolicySpec(filters=frozenset()), [TaskSnap(id=1)])
    reviews = RoundGroup(
        PolicySpec(), [TaskSnap(id=2, kind="review", skills=frozenset({"risk_review"}))], review=True
    )

    result = plan_round([orders, reviews], [reviewer], now=NOW)

    assert [(o.task_id, o.agent_id) for o in result.offers] == [(2, 5)]
    assert [w.reason for w in result.waiting] == [WaitReason.NO_QUALIFIED_AGENT]


def test_offer_windows_follow_each_tasks_policy_and_position():
    short = PolicySpec(offer_seconds=120)
    result = plan_round([RoundGroup(short, [TaskSnap(id=1)])], [agent(1)], now=NOW)

    assert offer_windows(result.offers, {1: short}) == [120]


@pytest.mark.parametrize(
    ("reason", "waited", "expected"),
    [
        (WaitReason.NO_QUALIFIED_AGENT, 0, True),
        (WaitReason.NONE_ONLINE, 299, False),
        (WaitReason.NONE_ONLINE, 300, True),
        (WaitReason.ALL_AT_CAPACITY, 10_000, False),
        (WaitReason.OUTRANKED, 10_000, False),
    ],
)
def test_which_waiting_tasks_go_to_the_supervisor(reason, waited, expected):
    assert needs_supervisor(Waiting(1, reason), waited_seconds=waited, l2_wait_seconds=300) is expected


def test_rounds_run_out_at_the_policys_maximum():
    assert not rounds_exhausted(2, max_rounds=3)
    assert rounds_exhausted(3, max_rounds=3)
